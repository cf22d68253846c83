package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
)

// runPlot draws again the plot of a records file that bench or bench
// scale wrote (-out, BENCH_OUT), without measuring anything.
func runPlot(args []string) error {
	fs := flag.NewFlagSet("bench plot", flag.ContinueOnError)
	in := fs.String("in", "", "records file (JSON, as -out writes it)")
	out := fs.String("out", "", "PNG plot file to write")
	scale := fs.Bool("scale", false, "the records are bench scale's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		return fmt.Errorf("plot: -in and -out are both needed")
	}
	rep, err := readRecords(*in)
	if err != nil {
		return err
	}
	v := proxyPlot
	if *scale {
		v = scalePlot
	}
	var systems []string
	for _, rec := range rep.records {
		if !slices.Contains(systems, rec.System) {
			systems = append(systems, rec.System)
		}
	}
	if err := writePlot(*out, plotPanels(rep, systems, v)); err != nil {
		return err
	}
	fmt.Println("plot:", *out)
	return nil
}

// readRecords reads a records file written by report.writeJSON.
func readRecords(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &report{}
	if err := json.Unmarshal(b, &r.records); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
