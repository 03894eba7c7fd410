// Package saga defines sagas: an ordered set of side-effecting tool calls
// where a failure at step k undoes steps k-1 … 1 by running their
// compensation tools in reverse order. The same Definition drives both
// runners: the embedded one (platform/saga/local) and AWS Step Functions,
// whose Amazon States Language this package generates (see ASL).
//
// A definition file is JSON:
//
//	{
//	  "name": "book_trip",
//	  "description": "Book a trip: flight, hotel, then charge the card.",
//	  "inputSchema": {"type": "object", ...},
//	  "steps": [
//	    {"name": "reserve_flight",
//	     "action":       {"tool": "reserve_flight", "input": {"from": "$.input.from", "to": "$.input.to"}},
//	     "compensation": {"tool": "cancel_flight",  "input": {"reservation": "$.steps.reserve_flight.reservation"}},
//	     "retry": {"maxAttempts": 2, "intervalSeconds": 1, "backoffRate": 2},
//	     "timeoutSeconds": 30, "heartbeatSeconds": 10},
//	    ...
//	  ],
//	  "output": {"flight": "$.steps.reserve_flight", ...}
//	}
//
// Inputs are templates: a string value that starts with "$." is a path into
// the saga document {"input": <saga input>, "steps": {<step name>: <output>}}
// (dot-separated object fields only); every other value is a literal. An
// action may read the saga input and the outputs of earlier steps; a
// compensation may also read its own step's action output.
package saga

import "encoding/json"

// Definition is one saga.
type Definition struct {
	// Name is the saga's name and the name of the tool that starts it:
	// [a-zA-Z0-9_-]{1,64} (a tool name), and it names the state machine.
	Name string `json:"name"`
	// Description tells the model when to use the saga (it is the tool's
	// description).
	Description string `json:"description"`
	// InputSchema is the JSON Schema (type object) of the saga's input: the
	// saga tool's input schema.
	InputSchema json.RawMessage `json:"inputSchema"`
	// Steps run in order; at least one.
	Steps []Step `json:"steps"`
	// Output is a template over the saga document giving the saga's result;
	// nil means the whole "steps" object.
	Output json.RawMessage `json:"output,omitempty"`
}

// Step is one side effect and how to undo it.
type Step struct {
	// Name is unique in the saga: [A-Za-z0-9_]{1,64} (it becomes a state
	// name and a JSON field of the saga document).
	Name string `json:"name"`
	// Action is the tool call that does the side effect.
	Action Call `json:"action"`
	// Compensation undoes Action; nil for a step with nothing to undo (a
	// read). A step with a compensation is compensated when a LATER step
	// fails; the failing step itself is not (its action did not succeed).
	Compensation *Call `json:"compensation,omitempty"`
	// Retry is how a failed action (and compensation) is retried; zero
	// means DefaultRetry.
	Retry Retry `json:"retry"`
	// TimeoutSeconds bounds one attempt; 0 means DefaultTimeoutSeconds.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
	// HeartbeatSeconds, when > 0, makes the worker report liveness at
	// least this often; an attempt silent for longer fails with
	// States.HeartbeatTimeout (and is retried like a timeout).
	HeartbeatSeconds int `json:"heartbeatSeconds,omitempty"`
}

// Call is one tool invocation with a templated input.
type Call struct {
	Tool  string          `json:"tool"`
	Input json.RawMessage `json:"input,omitempty"`
}

// Retry is a step's retry policy (the ASL Retrier fields).
type Retry struct {
	// MaxAttempts is the number of RETRIES after the first attempt (ASL
	// semantics); 0 with the other fields zero means DefaultRetry.
	MaxAttempts     int     `json:"maxAttempts"`
	IntervalSeconds int     `json:"intervalSeconds"`
	BackoffRate     float64 `json:"backoffRate"`
}

// Defaults for fields left zero.
const (
	DefaultTimeoutSeconds = 60
)

// DefaultRetry retries twice, after 1 s and 2 s.
var DefaultRetry = Retry{MaxAttempts: 2, IntervalSeconds: 1, BackoffRate: 2}

// Error names a worker reports (SendTaskFailure's error, the local runner's
// StepError.Name). Only ErrorTool is retried (per the step's policy): a
// saga tool's contract is that an error return means it did nothing. A
// timeout (ours or the runtime's States.Timeout / States.HeartbeatTimeout),
// ErrorInvalidInput and ErrorOutcomeUnknown are not retried, because the
// attempt may have had its effect; they go straight to compensation.
const (
	ErrorTool           = "agentbus.ToolError"
	ErrorTimeout        = "agentbus.Timeout"
	ErrorInvalidInput   = "agentbus.InvalidInput"
	ErrorOutcomeUnknown = "agentbus.OutcomeUnknown"
	// ErrorCompensationFailed is the error of an execution whose
	// compensation failed (after its retries).
	ErrorCompensationFailed = "agentbus.CompensationFailed"
)
