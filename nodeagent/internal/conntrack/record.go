package conntrack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/hashicorp/go-hclog"
)

// RecordFile is the name of the record Apply keeps beside the agent's
// cache, for Restore.
const RecordFile = "sysctls.json"

// recorded is one sysctl Apply changed: the value it found before its
// first change (Original) and the value it last wrote (Set).
type recorded struct {
	Path     string `json:"path"`
	Original int    `json:"original"`
	Set      int    `json:"set"`
}

// record is the file of every sysctl Apply changed. It survives restarts:
// a later start that writes a sysctl again keeps the first Original (the
// value then is doorman's own).
type record struct {
	path    string     // "" = keep no record
	Sysctls []recorded `json:"sysctls"`
}

// loadRecord reads the record at path; a missing file is an empty record.
func loadRecord(path string) (*record, error) {
	r := &record{path: path}
	if path == "" {
		return r, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sysctl record: %w", err)
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("read sysctl record %s: %w", path, err)
	}
	return r, nil
}

// note records that the sysctl at path, now was, is about to be set to
// value, and saves the record before the caller writes the sysctl.
func (r *record) note(path string, was, value int) error {
	if r.path == "" {
		return nil
	}
	i := sort.Search(len(r.Sysctls), func(i int) bool { return r.Sysctls[i].Path >= path })
	if i < len(r.Sysctls) && r.Sysctls[i].Path == path {
		r.Sysctls[i].Set = value
	} else {
		r.Sysctls = append(r.Sysctls, recorded{})
		copy(r.Sysctls[i+1:], r.Sysctls[i:])
		r.Sysctls[i] = recorded{Path: path, Original: was, Set: value}
	}
	return r.save()
}

// save writes the record whole (a temporary file renamed over it), so a
// crash leaves the old record or the new one.
func (r *record) save() error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(r.path), 0o700); err != nil {
		return fmt.Errorf("save sysctl record: %w", err)
	}
	tmp := r.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save sysctl record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, r.path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save sysctl record %s: %w", r.path, err)
	}
	return nil
}

// Restored is what Restore did with one recorded sysctl.
type Restored struct {
	Path     string
	Original int // the value before doorman's first change
	Set      int // the value doorman last wrote
	Current  int // the value Restore found
	Written  bool
	Err      error
}

// Restore puts back, in the network namespace at netnsPath ("" = the
// caller's), each sysctl recorded at recordPath whose value is still the
// one doorman set; one changed since (by an administrator) is kept and
// logged. Each is logged. Once all went well the record is deleted, so a
// second run, or a node with no record, finds nothing and succeeds; on an
// error the record stays for the next run.
func Restore(log hclog.Logger, netnsPath, recordPath string) ([]Restored, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("conntrack")
	r, err := loadRecord(recordPath)
	if err != nil {
		return nil, err
	}
	if len(r.Sysctls) == 0 {
		log.Info("no sysctls to restore", "record", recordPath)
		return nil, removeRecord(recordPath)
	}
	var out []Restored
	err = inNetNS(netnsPath, func() error {
		for _, s := range r.Sysctls {
			out = append(out, restore(s))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range out {
		switch {
		case s.Err != nil:
			log.Error("sysctl not restored", "sysctl", s.Path, "original", s.Original, "error", s.Err)
			errs = append(errs, s.Err)
		case s.Written:
			log.Info("sysctl restored", "sysctl", s.Path, "from", s.Current, "to", s.Original)
		case s.Current == s.Original:
			log.Info("sysctl already at its original value", "sysctl", s.Path, "value", s.Current)
		default:
			log.Warn("sysctl changed since doorman set it: kept", "sysctl", s.Path, "value", s.Current, "doorman set", s.Set, "original", s.Original)
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("restore sysctls (record %s kept): %w", recordPath, errors.Join(errs...))
	}
	return out, removeRecord(recordPath)
}

func restore(s recorded) Restored {
	out := Restored{Path: s.Path, Original: s.Original, Set: s.Set}
	out.Current, out.Err = readInt(s.Path)
	if out.Err != nil || out.Current != s.Set || s.Set == s.Original {
		return out
	}
	if err := os.WriteFile(s.Path, []byte(strconv.Itoa(s.Original)), 0o644); err != nil {
		out.Err = explain(err, filepath.Base(s.Path))
		return out
	}
	out.Written = true
	return out
}

func removeRecord(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove sysctl record: %w", err)
	}
	return nil
}
