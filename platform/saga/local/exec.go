package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	psaga "github.com/agentbus/agentbus/platform/saga"
	"github.com/agentbus/agentbus/saga"
)

// errStopped: the runner is closing; the goroutine records nothing more.
var errStopped = errors.New("saga runner stopping")

// Backoff of infrastructure errors (a task in progress elsewhere, the
// database): the same attempt is asked again after this, doubling.
const (
	infraBackoffMin = 50 * time.Millisecond
	infraBackoffMax = 2 * time.Second
)

// run drives one execution to its end. An error that is not the runner
// stopping (the database) is logged and the execution retried.
func (r *Runner) run(name string) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.running, name)
		r.mu.Unlock()
	}()
	backoff := infraBackoffMin
	for {
		err := r.drive(name)
		if err == nil || r.ctx.Err() != nil {
			return
		}
		r.log.Error("saga runner: execution interrupted; retrying", "execution", name, "err", err, "after", backoff)
		if !r.sleep(backoff) {
			return
		}
		backoff = min(backoff*2, infraBackoffMax)
	}
}

// sleep waits d unless the runner stops first (false).
func (r *Runner) sleep(d time.Duration) bool {
	if d <= 0 {
		return r.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// drive runs the execution from its recorded state to its end.
func (r *Runner) drive(name string) error {
	ctx := r.ctx
	x, err := loadExecution(ctx, r.db, name)
	if err != nil {
		return err
	}
	if x.Status != psaga.StatusRunning {
		r.notify()
		return nil
	}
	steps := x.Def.Steps
	if !x.Failed {
		for _, st := range steps {
			if _, done := x.Steps[st.Name]; done {
				continue
			}
			t, out, se, err := r.task(ctx, x, st, psaga.KindAction, st.Action)
			if err != nil {
				return err
			}
			err = r.commit(ctx, x, t, out, se, func() {
				if se != nil {
					x.Failed, x.FailedStep, x.ErrorName, x.ErrorCause = true, st.Name, se.Name, se.Cause
					return
				}
				x.Steps[st.Name] = out
			})
			if err != nil {
				return err
			}
			if x.Failed {
				r.log.Warn("saga runner: step failed; compensating", "execution", name, "step", st.Name, "error", se.Name, "cause", se.Cause)
				break
			}
		}
		if !x.Failed {
			out, err := resolve(x.Def.OutputTemplate(), x)
			err = r.commit(ctx, x, nil, nil, nil, func() {
				if err != nil {
					// Only a path into a step's output can miss here (the
					// definition was validated): undo everything.
					x.Failed, x.ErrorName, x.ErrorCause = true, saga.ErrorInvalidInput, "output template: "+err.Error()
					return
				}
				x.Status, x.Output = psaga.StatusSucceeded, out
			})
			if err != nil {
				return err
			}
			if x.Status == psaga.StatusSucceeded {
				r.log.Info("saga runner: execution succeeded", "execution", name)
				r.notify()
				return nil
			}
		}
	}

	// Compensate the steps before the failed one, last first.
	failed := len(steps)
	for i, st := range steps {
		if st.Name == x.FailedStep {
			failed = i
		}
	}
	for i := failed - 1; i >= 0; i-- {
		st := steps[i]
		if st.Compensation == nil || x.settled(st.Name) {
			continue
		}
		t, _, se, err := r.task(ctx, x, st, psaga.KindCompensation, *st.Compensation)
		if err != nil {
			return err
		}
		err = r.commit(ctx, x, t, nil, se, func() {
			if se != nil {
				x.Failures = append(x.Failures, failure{Step: st.Name, Error: se.Name, Cause: se.Cause})
				return
			}
			x.Compensated = append(x.Compensated, st.Name)
		})
		if err != nil {
			return err
		}
		if se != nil {
			r.log.Error("saga runner: compensation failed; going on with the others", "execution", name, "step", st.Name,
				"error", se.Name, "cause", se.Cause)
		}
	}
	err = r.commit(ctx, x, nil, nil, nil, func() {
		x.Status = psaga.StatusCompensated
		if len(x.Failures) > 0 {
			x.Status = psaga.StatusCompensationFailed
		}
	})
	if err != nil {
		return err
	}
	r.log.Info("saga runner: execution ended", "execution", name, "status", x.Status, "compensated", x.Compensated)
	r.notify()
	return nil
}

// commit applies change to x and writes x (when not nil) with t's outcome
// (when t is not nil) in one transaction. After an error, run reloads x.
func (r *Runner) commit(ctx context.Context, x *execution, t *psaga.Task, out json.RawMessage, se *psaga.StepError, change func()) error {
	if change != nil {
		change()
	}
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return stopped(ctx, err)
	}
	defer tx.Rollback()
	now := r.cfg.Now()
	if t != nil {
		if err := finishTask(ctx, tx, *t, out, se, now); err != nil {
			return stopped(ctx, err)
		}
	}
	if x != nil {
		if err := saveExecution(ctx, tx, x, now); err != nil {
			return stopped(ctx, err)
		}
	}
	return stopped(ctx, tx.Commit())
}

// stopped turns an error caused by the runner stopping into errStopped.
func stopped(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return errStopped
	}
	return err
}

// task runs one task (an action or a compensation) with the step's retry
// policy and returns its last attempt with the outcome (the caller records
// it with the execution's transition). A ToolError with retries left is
// recorded here and retried after its delay. It resumes from the recorded
// attempts: an unfinished attempt is asked again (same key).
func (r *Runner) task(ctx context.Context, x *execution, st saga.Step, kind psaga.Kind, c saga.Call) (*psaga.Task, json.RawMessage, *psaga.StepError, error) {
	retry := st.EffectiveRetry()
	t := &psaga.Task{Execution: x.Name, Session: x.Session, Saga: x.Saga, Step: st.Name, Kind: kind, Tool: c.Tool,
		TimeoutSeconds: st.EffectiveTimeoutSeconds(), HeartbeatSeconds: st.HeartbeatSeconds}
	prev, err := loadAttempts(ctx, r.db, x.Name, " AND step = ? AND kind = ?", st.Name, string(kind))
	if err != nil {
		return nil, nil, nil, stopped(ctx, err)
	}
	if n := len(prev); n > 0 {
		last := prev[n-1]
		for _, a := range prev {
			if a.Attempt > last.Attempt {
				last = a
			}
		}
		t.Attempt = last.Attempt
		if !last.Finished.IsZero() {
			// Finished attempts other than a retried ToolError are recorded
			// with their transition, so this one is waiting for its retry.
			if last.Outcome == "ok" || last.Outcome != saga.ErrorTool || last.Attempt >= retry.MaxAttempts {
				return nil, nil, nil, fmt.Errorf("saga runner: %s: attempt %d finished (%s) but the execution did not move on", t.Key(), last.Attempt, last.Outcome)
			}
			if !r.sleep(last.Finished.Add(delay(retry, last.Attempt)).Sub(r.cfg.Now())) {
				return nil, nil, nil, errStopped
			}
			t.Attempt++
		}
	}
	for {
		input, rerr := resolve(c.Input, x)
		if rerr != nil {
			// A template path missing from an output: the task cannot be
			// built. Recorded like an invalid input (never retried).
			return nil, nil, &psaga.StepError{Name: saga.ErrorInvalidInput, Cause: fmt.Sprintf("%s input: %v", kind, rerr)}, nil
		}
		t.Input = input
		if _, err := r.db.ExecContext(ctx, `INSERT OR IGNORE INTO saga_tasks (execution, step, kind, attempt, tool, input, started_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, t.Execution, t.Step, string(t.Kind), t.Attempt, t.Tool, string(input), r.cfg.Now().UnixMilli()); err != nil {
			return nil, nil, nil, stopped(ctx, fmt.Errorf("saga runner: record task %s: %w", t.Key(), err))
		}
		out, se, err := r.invoke(t)
		if err != nil {
			return nil, nil, nil, err
		}
		if se == nil || se.Name != saga.ErrorTool || t.Attempt >= retry.MaxAttempts {
			return t, out, se, nil
		}
		if err := r.commit(ctx, nil, t, nil, se, nil); err != nil {
			return nil, nil, nil, err
		}
		r.log.Info("saga runner: retrying task", "task", t.Key(), "cause", se.Cause, "after", delay(retry, t.Attempt))
		if !r.sleep(delay(retry, t.Attempt)) {
			return nil, nil, nil, errStopped
		}
		t.Attempt++
	}
}

// delay is the wait before retry n+1 after attempt n failed (ASL:
// IntervalSeconds × BackoffRate^n).
func delay(r saga.Retry, n int) time.Duration {
	rate := r.BackoffRate
	if rate < 1 {
		rate = 1
	}
	return time.Duration(float64(r.IntervalSeconds) * math.Pow(rate, float64(n)) * float64(time.Second))
}

// invoke asks the Invoker for t's outcome, repeating the same attempt while
// the Invoker reports an infrastructure error. An attempt that outlives
// the step's timeout is agentbus.Timeout. Anything that comes back after
// the runner began stopping is dropped (errStopped): the next runner asks
// the ledger again.
func (r *Runner) invoke(t *psaga.Task) (json.RawMessage, *psaga.StepError, error) {
	backoff := infraBackoffMin
	for {
		out, timedOut, err := r.invokeOnce(*t)
		if r.ctx.Err() != nil {
			return nil, nil, errStopped
		}
		var se *psaga.StepError
		switch {
		case errors.As(err, &se):
			return nil, se, nil
		case err == nil && (len(out) == 0 || json.Valid(out)):
			if len(out) == 0 {
				out = json.RawMessage(`null`)
			}
			return out, nil, nil
		case err == nil:
			return nil, &psaga.StepError{Name: saga.ErrorTool, Cause: fmt.Sprintf("%s returned output that is not JSON", t.Tool)}, nil
		case timedOut:
			return nil, &psaga.StepError{Name: saga.ErrorTimeout, Cause: fmt.Sprintf("%s: no answer within %d s", t.Tool, t.TimeoutSeconds)}, nil
		}
		r.log.Warn("saga runner: task not answered; asking again", "task", t.Key(), "err", err, "after", backoff)
		if !r.sleep(backoff) {
			return nil, nil, errStopped
		}
		backoff = min(backoff*2, infraBackoffMax)
	}
}

// invokeOnce calls the Invoker with the attempt's deadline.
func (r *Runner) invokeOnce(t psaga.Task) (json.RawMessage, bool, error) {
	ctx, cancel := context.WithTimeout(r.ctx, time.Duration(t.TimeoutSeconds)*time.Second)
	defer cancel()
	out, err := r.cfg.Invoker.Invoke(ctx, t)
	return out, errors.Is(ctx.Err(), context.DeadlineExceeded), err
}
