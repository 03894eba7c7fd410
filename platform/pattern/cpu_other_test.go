//go:build !unix

package pattern_test

import "time"

// cpuTime is unavailable here; the events/cpu-s metric is then omitted.
func cpuTime() time.Duration { return 0 }
