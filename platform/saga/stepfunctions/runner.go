package stepfunctions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/agentbus/agentbus/platform/saga"
	def "github.com/agentbus/agentbus/saga"
)

// API is the Step Functions calls a Runner makes; an *sfn.Client satisfies
// it.
type API interface {
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

// RunnerIAMActions lists the IAM actions a Runner calls: StartExecution on
// the state machines, DescribeExecution on their executions.
var RunnerIAMActions = []string{"states:StartExecution", "states:DescribeExecution"}

// Names of the generated ASL's terminal Fail states' errors that the Runner
// reads (the Compensated state's error is the original step error).
const (
	errCompensationFailed = def.ErrorCompensationFailed
)

// RunnerConfig configures a Runner. API and StateMachines are required.
type RunnerConfig struct {
	// API is the Step Functions client.
	API API
	// StateMachines maps a saga name to its state machine's ARN.
	StateMachines map[string]string
	// Definitions, when set, orders Outcome.Compensated by the definition
	// (reverse step order) instead of by the order of the execution's
	// failure report.
	Definitions saga.Definitions
	// PollInterval is Wait's first DescribeExecution interval (default
	// 200ms); it grows by half each poll up to MaxPollInterval (default
	// 2s).
	PollInterval, MaxPollInterval time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
}

// Runner is a saga.Runner on Step Functions. It is safe for concurrent use.
type Runner struct {
	api      API
	machines map[string]string
	defs     saga.Definitions
	poll     time.Duration
	maxPoll  time.Duration
	log      *slog.Logger
	// arns remembers the execution ARN of names seen, so Describe of a name
	// does not have to try each state machine.
	arns sync.Map // execution name → execution ARN
}

var _ saga.Runner = (*Runner)(nil)

// Errors of the Runner besides the saga.Err* ones.
var (
	// ErrAbnormalEnd: the execution ended without the saga's own outcome
	// (TIMED_OUT, ABORTED, or FAILED outside the generated compensation
	// chain). Its steps may or may not have been compensated. Describe and
	// Wait return it inside an *EndError.
	ErrAbnormalEnd = errors.New("saga execution ended abnormally")
)

// EndError is an execution that ended abnormally (see ErrAbnormalEnd).
type EndError struct {
	Execution string
	// Status is Step Functions' execution status (TIMED_OUT, ABORTED,
	// FAILED).
	Status string
	// ErrorName and Cause are the execution's error and cause, if any.
	ErrorName, Cause string
}

func (e *EndError) Error() string {
	s := fmt.Sprintf("saga execution %s ended %s without a saga outcome (compensation may not have run)", e.Execution, e.Status)
	if e.ErrorName != "" || e.Cause != "" {
		s += ": " + e.ErrorName + ": " + e.Cause
	}
	return s
}

// Unwrap makes errors.Is(err, ErrAbnormalEnd) hold.
func (e *EndError) Unwrap() error { return ErrAbnormalEnd }

var execNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

// NewRunner checks cfg and returns a Runner.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.API == nil {
		return nil, errors.New("stepfunctions: runner needs an API client")
	}
	machines := make(map[string]string, len(cfg.StateMachines))
	for name, arn := range cfg.StateMachines {
		if !strings.Contains(arn, ":stateMachine:") {
			return nil, fmt.Errorf("stepfunctions: saga %s: %q is not a state machine ARN", name, arn)
		}
		machines[name] = arn
	}
	r := &Runner{api: cfg.API, machines: machines, defs: cfg.Definitions,
		poll: cfg.PollInterval, maxPoll: cfg.MaxPollInterval, log: cfg.Logger}
	if r.poll <= 0 {
		r.poll = 200 * time.Millisecond
	}
	if r.maxPoll <= 0 {
		r.maxPoll = 2 * time.Second
	}
	r.maxPoll = max(r.maxPoll, r.poll)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// ExecutionARN is the ARN of the execution name of the state machine
// stateMachineARN (Step Functions derives it: the resource type becomes
// "execution" and the name is appended).
func ExecutionARN(stateMachineARN, name string) string {
	return strings.Replace(stateMachineARN, ":stateMachine:", ":execution:", 1) + ":" + name
}

// inputDoc is the execution input: the saga document with no steps yet.
type inputDoc struct {
	Session string          `json:"session"`
	Saga    string          `json:"saga"`
	Input   json.RawMessage `json:"input"`
	Steps   struct{}        `json:"steps"`
}

// Start starts req.Name unless it exists. It first describes the name, so
// that an existing RUNNING execution with the same input (which
// StartExecution would silently return again) reports started=false; a
// start racing another start of the same name may then report true to both,
// and there is still only one execution.
func (r *Runner) Start(ctx context.Context, req saga.StartRequest) (bool, error) {
	smARN, ok := r.machines[req.Saga]
	if !ok {
		return false, fmt.Errorf("stepfunctions: start %s: %w: %q", req.Name, saga.ErrUnknownSaga, req.Saga)
	}
	if !execNameRE.MatchString(req.Name) {
		return false, fmt.Errorf("stepfunctions: start: execution name %q: want 1-80 characters of A-Z a-z 0-9 _ -", req.Name)
	}
	in := req.Input
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(in, &obj); err != nil || obj == nil {
		return false, fmt.Errorf("stepfunctions: start %s: input must be a JSON object", req.Name)
	}
	doc, err := json.Marshal(inputDoc{Session: req.Session, Saga: req.Saga, Input: in})
	if err != nil {
		return false, fmt.Errorf("stepfunctions: start %s: %w", req.Name, err)
	}
	execARN := ExecutionARN(smARN, req.Name)
	r.arns.Store(req.Name, execARN)

	existing, err := r.api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(execARN)})
	switch {
	case err == nil:
		return false, sameInput(req.Name, existing.Input, doc)
	case !isErr[*types.ExecutionDoesNotExist](err):
		return false, fmt.Errorf("stepfunctions: start %s: describe: %w", req.Name, err)
	}
	_, err = r.api.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(smARN),
		Name:            aws.String(req.Name),
		Input:           aws.String(string(doc)),
	})
	switch {
	case err == nil:
		r.log.Debug("stepfunctions: started saga execution", "saga", req.Saga, "execution", req.Name)
		return true, nil
	case isErr[*types.StateMachineDoesNotExist](err):
		return false, fmt.Errorf("stepfunctions: start %s: %w: %q (state machine %s: %v)", req.Name, saga.ErrUnknownSaga, req.Saga, smARN, err)
	case isErr[*types.ExecutionAlreadyExists](err):
		// Started by someone else since we looked (or closed with a
		// different input): compare with what is there.
		existing, derr := r.api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(execARN)})
		if derr != nil {
			return false, fmt.Errorf("stepfunctions: start %s: exists, but describe: %w", req.Name, derr)
		}
		return false, sameInput(req.Name, existing.Input, doc)
	default:
		return false, fmt.Errorf("stepfunctions: start %s: %w", req.Name, err)
	}
}

// sameInput reports saga.ErrInputMismatch unless the existing execution's
// input document equals want (as JSON values: key order and spacing do not
// matter).
func sameInput(name string, got *string, want []byte) error {
	var a, b any
	if got == nil || json.Unmarshal([]byte(*got), &a) != nil || json.Unmarshal(want, &b) != nil || !reflect.DeepEqual(a, b) {
		return fmt.Errorf("stepfunctions: start %s: %w", name, saga.ErrInputMismatch)
	}
	return nil
}

// Describe returns the execution's outcome. An execution that ended without
// a saga outcome returns an *EndError (ErrAbnormalEnd).
func (r *Runner) Describe(ctx context.Context, name string) (saga.Outcome, error) {
	out, err := r.describe(ctx, name)
	if err != nil {
		return saga.Outcome{Execution: name}, err
	}
	return r.outcome(name, out)
}

// describe finds the execution by name: from the ARN remembered by Start,
// else trying the state machines, those whose saga name prefixes the
// execution name first (saga.ExecutionName starts names that way).
func (r *Runner) describe(ctx context.Context, name string) (*sfn.DescribeExecutionOutput, error) {
	if !execNameRE.MatchString(name) {
		return nil, fmt.Errorf("stepfunctions: describe %q: %w", name, saga.ErrUnknownExecution)
	}
	var candidates []string
	if arn, ok := r.arns.Load(name); ok {
		candidates = append(candidates, arn.(string))
	} else {
		sagas := slices.Sorted(func(yield func(string) bool) {
			for s := range r.machines {
				if !yield(s) {
					return
				}
			}
		})
		slices.SortStableFunc(sagas, func(a, b string) int {
			pa, pb := prefixes(a, name), prefixes(b, name)
			switch {
			case pa && !pb:
				return -1
			case pb && !pa:
				return 1
			}
			return 0
		})
		for _, s := range sagas {
			candidates = append(candidates, ExecutionARN(r.machines[s], name))
		}
	}
	for _, arn := range candidates {
		out, err := r.api.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		switch {
		case err == nil:
			r.arns.Store(name, arn)
			return out, nil
		case isErr[*types.ExecutionDoesNotExist](err), isErr[*types.StateMachineDoesNotExist](err):
			continue
		default:
			return nil, fmt.Errorf("stepfunctions: describe %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("stepfunctions: describe %s: %w", name, saga.ErrUnknownExecution)
}

// prefixes reports whether execution name was made by saga.ExecutionName
// for sagaName.
func prefixes(sagaName, name string) bool {
	p := sagaName
	if len(p) > 40 {
		p = p[:40]
	}
	return strings.HasPrefix(name, p+"-")
}

// report is the cause document of the generated ASL's terminal Fail states:
// the failure that started compensation, the compensations that ran and
// those that failed. The Compensated state's cause may carry only the
// first three fields and the CompensationFailed state's only the failures
// map (the contract's minimal shapes); outcome copes with both.
//
// FailedStep is a pointer because "" is a real value: the output template
// could not be built after every step succeeded (the embedded runner
// reports the same with an empty FailedStep), which differs from a cause
// without the member at all (not our report).
type report struct {
	FailedStep           *string         `json:"failedStep"`
	Error                string          `json:"error"`
	Cause                string          `json:"cause"`
	Compensated          json.RawMessage `json:"compensated"`
	CompensationFailures json.RawMessage `json:"compensationFailures"`
}

// stepFailure is an ASL error output ({"Error", "Cause"}), as a Catch
// stores it.
type stepFailure struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

func (r *Runner) outcome(name string, out *sfn.DescribeExecutionOutput) (saga.Outcome, error) {
	o := saga.Outcome{Execution: name}
	if out.Input != nil {
		var in struct {
			Saga string `json:"saga"`
		}
		if json.Unmarshal([]byte(*out.Input), &in) == nil {
			o.Saga = in.Saga
		}
	}
	errName, cause := aws.ToString(out.Error), aws.ToString(out.Cause)
	abnormal := func() (saga.Outcome, error) {
		return o, &EndError{Execution: name, Status: string(out.Status), ErrorName: errName, Cause: cause}
	}
	switch out.Status {
	case types.ExecutionStatusRunning, types.ExecutionStatusPendingRedrive:
		o.Status = saga.StatusRunning
		return o, nil
	case types.ExecutionStatusSucceeded:
		o.Status = saga.StatusSucceeded
		o.Output = json.RawMessage(aws.ToString(out.Output))
		if !json.Valid(o.Output) {
			return o, fmt.Errorf("stepfunctions: execution %s succeeded with output that is not JSON", name)
		}
		return o, nil
	case types.ExecutionStatusFailed:
	default:
		return abnormal()
	}

	var rep report
	if json.Unmarshal([]byte(cause), &rep) != nil {
		return abnormal()
	}
	// ours: the cause is the generated ASL's failure report (it names the
	// failed step, "" when the output template failed, and its error).
	ours := rep.FailedStep != nil && rep.Error != ""
	failures, ferr := orderedObject(rep.CompensationFailures)
	if errName == errCompensationFailed {
		o.Status = saga.StatusCompensationFailed
		if !ours && ferr == nil && len(failures) == 0 {
			// The minimal shape: the cause is the failures map itself.
			failures, ferr = orderedObject(json.RawMessage(cause))
		}
		if ferr != nil || len(failures) == 0 {
			return abnormal()
		}
	} else {
		if !ours {
			return abnormal()
		}
		o.Status = saga.StatusCompensated
	}
	if ours {
		o.FailedStep = *rep.FailedStep
		o.Error = rep.Error + ": " + rep.Cause
	}
	for _, f := range failures {
		var sf stepFailure
		_ = json.Unmarshal(f.value, &sf)
		o.Failures = append(o.Failures, f.key+": "+sf.Error+": "+sf.Cause)
	}
	done, err := orderedObject(rep.Compensated)
	if err != nil {
		return abnormal()
	}
	for _, d := range done {
		o.Compensated = append(o.Compensated, d.key)
	}
	r.orderByDefinition(o.Saga, o.Compensated)
	return o, nil
}

// orderByDefinition sorts steps into reverse definition order, the order
// compensations run in, when the definition is known.
func (r *Runner) orderByDefinition(sagaName string, steps []string) {
	if r.defs == nil || len(steps) < 2 {
		return
	}
	d, ok := r.defs.Lookup(sagaName)
	if !ok {
		return
	}
	index := map[string]int{}
	for i, s := range d.Steps {
		index[s.Name] = i
	}
	slices.SortStableFunc(steps, func(a, b string) int { return index[b] - index[a] })
}

type member struct {
	key   string
	value json.RawMessage
}

// orderedObject returns the members of a JSON object in document order
// (encoding/json maps lose it; it is the order the compensations ran in
// when the report was built by inserting one step at a time). Empty input
// or null is an empty object.
func orderedObject(raw json.RawMessage) ([]member, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{key: key, value: v})
	}
	return out, nil
}

// waitAttempts is how many DescribeExecution failures in a row Wait
// rides out (throttling, a network blip) before it returns the error.
const waitAttempts = 5

// Wait polls Describe until the execution ends or ctx ends, the interval
// growing from PollInterval to MaxPollInterval. An unknown execution or an
// abnormal end returns at once; other Describe errors are retried up to
// waitAttempts times in a row.
func (r *Runner) Wait(ctx context.Context, name string) (saga.Outcome, error) {
	d := r.poll
	failures := 0
	for {
		o, err := r.Describe(ctx, name)
		switch {
		case err == nil && o.Status != saga.StatusRunning:
			return o, nil
		case err == nil:
			failures = 0
		case errors.Is(err, saga.ErrUnknownExecution), errors.Is(err, ErrAbnormalEnd), ctx.Err() != nil:
			return o, err
		default:
			failures++
			if failures >= waitAttempts {
				return o, err
			}
			r.log.Warn("stepfunctions: describing a saga execution failed; retrying", "execution", name, "err", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return o, fmt.Errorf("stepfunctions: wait for %s: %w", name, ctx.Err())
		case <-t.C:
		}
		d = min(d+d/2, r.maxPoll)
	}
}

// isErr reports whether err's chain holds an error of type T (the SDK's
// modeled exceptions are pointer types).
func isErr[T error](err error) bool {
	var t T
	return errors.As(err, &t)
}
