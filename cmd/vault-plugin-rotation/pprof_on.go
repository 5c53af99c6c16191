//go:build pprof

package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

// A plugin built with -tags pprof and started with ROTATION_CPUPROFILE=FILE writes a CPU profile of
// its first 12 s to FILE.PID (Vault may start more than one process of the plugin). For benchmarks
// only (docs/benchmarks.md "Profiling"); release builds have no such code.
func init() {
	path := os.Getenv("ROTATION_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return
	}
	go func() {
		time.Sleep(12 * time.Second)
		pprof.StopCPUProfile()
		_ = f.Close()
	}()
}
