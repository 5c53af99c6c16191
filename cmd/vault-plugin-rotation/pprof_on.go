//go:build pprof

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"
)

// A plugin built with -tags pprof and started with ROTATION_PROFILE_DIR=DIR writes a CPU profile
// of its first 12 s to DIR/cpu.PID and its live heap every 10 s to DIR/heap.PID (Vault may start
// more than one process of the plugin). For benchmarks only (docs/benchmarks.md "Profiling");
// release builds have no such code.
func init() {
	dir := os.Getenv("ROTATION_PROFILE_DIR")
	if dir == "" {
		return
	}
	pid := os.Getpid()
	if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu.%d", pid))); err == nil {
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
		} else {
			go func() {
				time.Sleep(12 * time.Second)
				pprof.StopCPUProfile()
				_ = f.Close()
			}()
		}
	}
	go func() {
		for range time.Tick(10 * time.Second) {
			runtime.GC()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap.%d", pid)))
			if err != nil {
				return
			}
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}()
}
