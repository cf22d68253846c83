package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// usage is what /proc says about one process.
type usage struct {
	RSSBytes int64
	PeakRSS  int64 // VmHWM: the most RSS the process has had
	// RSSAnon and RSSFile split RSS into anonymous pages (heap, stacks,
	// the runtime's own) and file-backed ones (the binary's text and data
	// as they are paged in); 0 on a kernel that does not say.
	RSSAnon    int64
	RSSFile    int64
	CPUSeconds float64 // user + system since the process started
}

func readUsage(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, fmt.Errorf("status of pid %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, fmt.Errorf("stat of pid %d: %w", pid, err)
	}
	return parseUsage(string(status), string(stat))
}

// parseKB reads the "N kB" of a /proc/PID/status line.
func parseKB(line, rest string) (int64, error) {
	f := strings.Fields(rest)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("status line %q", line)
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("status line %q: %w", line, err)
	}
	return kb, nil
}

// parseUsage reads VmRSS, VmHWM, RssAnon and RssFile from /proc/PID/status and utime+stime (fields 14
// and 15) from /proc/PID/stat.
func parseUsage(status, stat string) (usage, error) {
	var u usage
	found := false
	for _, l := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := parseKB(l, rest)
			if err != nil {
				return u, err
			}
			u.RSSBytes, found = kb*1024, true
		}
		for _, f := range []struct {
			name string
			to   *int64
		}{{"VmHWM:", &u.PeakRSS}, {"RssAnon:", &u.RSSAnon}, {"RssFile:", &u.RSSFile}} {
			if rest, ok := strings.CutPrefix(l, f.name); ok {
				kb, err := parseKB(l, rest)
				if err != nil {
					return u, err
				}
				*f.to = kb * 1024
			}
		}
	}
	if !found {
		return u, fmt.Errorf("no VmRSS in status")
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return u, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("stat utime %q stime %q", f[11], f[12])
	}
	u.CPUSeconds = float64(utime+stime) / clockTicks
	return u, nil
}
