// Package saga declares what runs a saga (saga.Definition): the Runner that
// starts executions and reports their outcome, the Task a runner hands to a
// worker for one step, and the Invoker that performs a step's tool call
// exactly once. Implementations: platform/saga/local (embedded, SQLite) and
// platform/saga/stepfunctions (AWS Step Functions + SQS task tokens). Both
// pass the suite in platform/saga/sagatest.
package saga

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	def "github.com/agentbus/agentbus/saga"
)

// Kind says whether a task is a step's action or its compensation.
type Kind string

// Task kinds.
const (
	KindAction       Kind = "action"
	KindCompensation Kind = "compensation"
)

// Task is one tool call of a saga execution, as the worker receives it (the
// SQS message body the generated ASL sends, or the local runner's call).
type Task struct {
	// Execution is the execution's name (unique per saga run).
	Execution string `json:"execution"`
	// Session is the agent session that started the execution; the claim
	// ledger scopes the task's claim to it.
	Session string `json:"session"`
	Saga    string `json:"saga"`
	Step    string `json:"step"`
	Kind    Kind   `json:"kind"`
	Tool    string `json:"tool"`
	// Input is the resolved tool input (a JSON object).
	Input json.RawMessage `json:"input"`
	// TaskToken is Step Functions' callback token; empty for the local
	// runner.
	TaskToken string `json:"taskToken,omitempty"`
	// HeartbeatSeconds, when > 0, is how often the worker must heartbeat.
	HeartbeatSeconds int `json:"heartbeatSeconds,omitempty"`
	// TimeoutSeconds bounds the attempt.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// Attempt counts the task's retries: 0 for the first attempt (Step
	// Functions' $$.State.RetryCount). A redelivery of one attempt has the
	// same Attempt; a retry after a failure has the next.
	Attempt int `json:"attempt"`
}

// Key is the task's idempotency key in the claim ledger: one per
// execution, step, kind and attempt, so a redelivered task never runs its
// tool twice, while a retry after a reported failure (agentbus.ToolError:
// the tool said it did nothing) runs it again.
func (t Task) Key() string {
	return fmt.Sprintf("saga/%s/%s/%s/%d", t.Execution, t.Step, t.Kind, t.Attempt)
}

// StepError is a failed task: Name is one of the saga.Error* names (or a
// runtime's States.* error), Cause says what happened for a person.
type StepError struct {
	Name  string
	Cause string
}

func (e *StepError) Error() string { return e.Name + ": " + e.Cause }

// Invoker performs one task's tool call exactly once (the tool-gateway's
// claim ledger): a repeated call with the same Task.Key returns the stored
// outcome instead of running the tool again. A failed call returns a
// *StepError; any other error is infrastructure (retry the task later).
type Invoker interface {
	Invoke(ctx context.Context, t Task) (json.RawMessage, error)
}

// Status is where an execution stands.
type Status string

// Execution statuses.
const (
	StatusRunning            Status = "running"
	StatusSucceeded          Status = "succeeded"
	StatusCompensated        Status = "compensated"
	StatusCompensationFailed Status = "compensation_failed"
)

// Outcome is an execution's state (final unless Status is running).
type Outcome struct {
	Execution string
	Saga      string
	Status    Status
	// Output is the saga's output template resolved (succeeded only).
	Output json.RawMessage
	// FailedStep and Error describe the action failure that started
	// compensation (compensated, compensation_failed).
	FailedStep string
	Error      string
	// Compensated lists the steps whose compensation ran successfully, in
	// the order they ran (reverse step order).
	Compensated []string
	// Failures lists the compensations that failed after their retries,
	// "<step>: <error>" (compensation_failed only).
	Failures []string
}

// Errors callers check with errors.Is.
var (
	// ErrUnknownSaga: the runner has no definition (state machine) by that
	// name.
	ErrUnknownSaga = errors.New("unknown saga")
	// ErrUnknownExecution: no execution by that name.
	ErrUnknownExecution = errors.New("unknown execution")
	// ErrInputMismatch: Start was called with an existing execution's name
	// but a different input (Step Functions' ExecutionAlreadyExists).
	ErrInputMismatch = errors.New("execution exists with a different input")
)

// Runner runs saga executions.
type Runner interface {
	// Start starts an execution of req.Saga named req.Name (caller-chosen,
	// deterministic: see ExecutionName). Starting a name that already exists
	// with the same input is not an error and starts nothing: started is
	// false and the existing execution is the one to Wait for.
	Start(ctx context.Context, req StartRequest) (started bool, err error)
	// Describe returns the execution's current outcome.
	Describe(ctx context.Context, name string) (Outcome, error)
	// Wait blocks until the execution ends (or ctx ends) and returns its
	// final outcome.
	Wait(ctx context.Context, name string) (Outcome, error)
}

// StartRequest names an execution to start.
type StartRequest struct {
	Saga string
	// Name is the execution name: [A-Za-z0-9_-]{1,80} (Step Functions).
	Name string
	// Session is the agent session the execution belongs to.
	Session string
	// Input is the saga input (a JSON object, valid for the saga's
	// InputSchema).
	Input json.RawMessage
}

// ExecutionName is the deterministic execution name of the saga call
// (session, step, callId): a re-run of the same tool call finds the same
// execution instead of starting another.
func ExecutionName(sagaName, session string, step int, callID string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d/%s", sagaName, session, step, callID)))
	prefix := sagaName
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:32]
}

// Definitions is how a runner finds a saga's definition by name.
type Definitions interface {
	Lookup(name string) (def.Definition, bool)
}
