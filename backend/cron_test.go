package backend

import (
	"context"
	"fmt"
	"testing"
)

// A cron expression naming a date that does not exist would be accepted by the parser and never
// fire (robfig/cron's Next answers the zero time): it is refused, naming rotation_schedule.
func TestScheduleThatNeverFires(t *testing.T) {
	te := newEnv(t)
	for _, expr := range []string{"0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "15 3 30,31 2 *"} {
		_, target := newFault(t, secretOf("pw-cron"))
		in := faultRole(target)
		in.Secrets[fFaultValue] = "pw-cron"
		in.RotationPeriod, in.RotationSchedule = nil, ptr(expr)
		_, err := te.e.WriteRole(context.Background(), "c", in)
		wantUserError(t, err, fmt.Sprintf("rotation_schedule: %q never fires", expr))
		if v, _ := te.e.ReadRole(context.Background(), "c"); v != nil {
			t.Fatalf("%s: a role was stored", expr)
		}
	}
	for i, expr := range []string{"0 0 29 2 *", "0 0 31 1,4 *", "0 0 30 * *", "0 0 31 4 1"} {
		_, target := newFault(t, secretOf("pw-cron"))
		in := faultRole(target)
		in.Secrets[fFaultValue] = "pw-cron"
		in.RotationPeriod, in.RotationSchedule = nil, ptr(expr)
		name := fmt.Sprintf("ok%d", i)
		if _, err := te.e.WriteRole(context.Background(), name, in); err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if due := te.e.queue.queued(name); due.IsZero() {
			t.Fatalf("%s: not scheduled", expr)
		}
	}
}
