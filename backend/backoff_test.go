package backend

import (
	"math"
	"testing"
	"time"
)

// backoff never overflows, never panics and stays within [d/2, d] of its bounded doubling,
// whatever the config (even one Validate refuses) and whatever the failure count.
func TestBackoffExtremes(t *testing.T) {
	const maxD = time.Duration(math.MaxInt64)
	configs := []Config{
		{RetryBase: 1, RetryMax: maxD},
		{RetryBase: time.Second, RetryMax: maxD},
		{RetryBase: maxD/2 + 1, RetryMax: maxD},
		{RetryBase: maxD, RetryMax: maxD},
		{RetryBase: 24 * time.Hour, RetryMax: 24 * time.Hour},
		{RetryBase: time.Hour, RetryMax: time.Second}, // max below base
		{RetryBase: 0, RetryMax: 0},
		{RetryBase: -time.Hour, RetryMax: -time.Second},
		{RetryBase: time.Duration(math.MinInt64), RetryMax: time.Duration(math.MinInt64)},
	}
	counts := []int{math.MinInt, -1, 0, 1, 2, 3, 62, 63, 64, 65, 1000, math.MaxInt}
	for _, cfg := range configs {
		base, top := cfg.RetryBase, cfg.RetryMax
		if base <= 0 {
			base = DefaultConfig().RetryBase
		}
		if top < base {
			top = base
		}
		for _, n := range counts {
			// The wait is base·2^(n-1), capped at top; computed here without multiplying.
			want := top
			if n <= 1 {
				want = base
			} else if n-1 < 63 && base <= top>>(n-1) {
				want = base << (n - 1)
			}
			for i := 0; i < 20; i++ {
				got := backoff(cfg, n)
				if got < want/2 || got > want {
					t.Fatalf("backoff(%+v, %d) = %v, want within [%v, %v]", cfg, n, got, want/2, want)
				}
			}
		}
	}
}
