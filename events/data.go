package events

import (
	"encoding/json"
	"strconv"
)

// Payload is implemented by every data type of the contract; it names the
// CloudEvents type the payload belongs to, so New and Decode can check it.
type Payload interface {
	EventType() string
}

// stepKeyed and toolKeyed let New copy routing keys from data into the
// extensions rules match on, so a producer cannot forget them.
type stepKeyed interface{ routingStep() int }
type toolKeyed interface{ routingTool() string }

// Usage counts model tokens.
type Usage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
}

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// Limits bound one agent run; zero means the runtime's default.
type Limits struct {
	MaxSteps       int `json:"maxSteps,omitempty"`
	MaxTokens      int `json:"maxTokens,omitempty"`
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// AgentSpec is an optional inline agent definition carried by AgentRequested.
type AgentSpec struct {
	Name   string   `json:"name,omitempty"`
	Model  string   `json:"model,omitempty"`
	System string   `json:"system,omitempty"`
	Tools  []string `json:"tools,omitempty"`
	Limits *Limits  `json:"limits,omitempty"`
}

// AgentRequested starts an agent session.
type AgentRequested struct {
	Prompt   string            `json:"prompt"`
	Agent    *AgentSpec        `json:"agent,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// AgentCancelRequested asks the planner to stop a session.
type AgentCancelRequested struct {
	Reason string `json:"reason,omitempty"`
}

// ToolCall is one tool use the model asked for.
type ToolCall struct {
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// StepPlanned is one model turn that asked for 1..N tool calls.
type StepPlanned struct {
	Step  int        `json:"step"`
	Calls []ToolCall `json:"calls"`
	Text  string     `json:"text,omitempty"`
	Usage Usage      `json:"usage"`
}

// ToolInvocationRequested asks a tool runner to run one call.
type ToolInvocationRequested struct {
	Step           int             `json:"step"`
	CallID         string          `json:"callId"`
	Tool           string          `json:"tool"`
	Input          json.RawMessage `json:"input"`
	TimeoutMs      int64           `json:"timeoutMs,omitempty"`
	IdempotencyKey string          `json:"idempotencyKey"`
}

// ToolInvocationCompleted carries one call's output.
type ToolInvocationCompleted struct {
	Step       int             `json:"step"`
	CallID     string          `json:"callId"`
	Tool       string          `json:"tool"`
	Output     json.RawMessage `json:"output"`
	DurationMs int64           `json:"durationMs"`
}

// ToolInvocationFailed reports why one call produced no output.
type ToolInvocationFailed struct {
	Step    int               `json:"step"`
	CallID  string            `json:"callId"`
	Tool    string            `json:"tool"`
	Reason  ToolFailureReason `json:"reason"`
	Message string            `json:"message,omitempty"`
}

// ToolResult is one call's outcome inside StepCompleted: Output when OK,
// Reason and Message otherwise.
type ToolResult struct {
	CallID  string            `json:"callId"`
	Tool    string            `json:"tool"`
	OK      bool              `json:"ok"`
	Output  json.RawMessage   `json:"output,omitempty"`
	Reason  ToolFailureReason `json:"reason,omitempty"`
	Message string            `json:"message,omitempty"`
}

// StepCompleted joins every call of a step.
type StepCompleted struct {
	Step    int          `json:"step"`
	Results []ToolResult `json:"results"`
}

// AgentCompleted ends a session with an answer.
type AgentCompleted struct {
	Answer string `json:"answer"`
	Steps  int    `json:"steps"`
	Usage  Usage  `json:"usage"`
}

// AgentFailed ends a session because a guard tripped or something broke.
type AgentFailed struct {
	Reason  AgentFailureReason `json:"reason"`
	Message string             `json:"message,omitempty"`
	Steps   int                `json:"steps"`
	Usage   Usage              `json:"usage"`
}

// AgentCancelled ends a session after AgentCancelRequested.
type AgentCancelled struct {
	Reason string `json:"reason,omitempty"`
	Steps  int    `json:"steps"`
	Usage  Usage  `json:"usage"`
}

// ApprovalRequested asks a human to approve one tool call.
type ApprovalRequested struct {
	Step     int             `json:"step"`
	CallID   string          `json:"callId"`
	Tool     string          `json:"tool"`
	Input    json.RawMessage `json:"input"`
	Question string          `json:"question,omitempty"`
}

// ApprovalDecided is a human's answer to ApprovalRequested.
type ApprovalDecided struct {
	CallID   string `json:"callId"`
	Approved bool   `json:"approved"`
	By       string `json:"by,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

// SagaStarted reports that a tool call started a saga execution.
type SagaStarted struct {
	Saga        string `json:"saga"`
	ExecutionID string `json:"executionId"`
	Step        int    `json:"step"`
	CallID      string `json:"callId"`
}

// SagaCompleted reports a saga that ran every step.
type SagaCompleted struct {
	Saga        string          `json:"saga"`
	ExecutionID string          `json:"executionId"`
	Output      json.RawMessage `json:"output,omitempty"`
}

// SagaCompensated reports a saga whose failed step was undone by compensation.
type SagaCompensated struct {
	Saga        string   `json:"saga"`
	ExecutionID string   `json:"executionId"`
	FailedStep  string   `json:"failedStep"`
	Error       string   `json:"error"`
	Compensated []string `json:"compensated"`
}

// SagaCompensationFailed reports a saga whose compensation itself failed.
type SagaCompensationFailed struct {
	Saga        string   `json:"saga"`
	ExecutionID string   `json:"executionId"`
	FailedStep  string   `json:"failedStep"`
	Error       string   `json:"error"`
	Failures    []string `json:"failures"`
}

// EventType implementations tie each payload to its type string.

// EventType implements Payload.
func (AgentRequested) EventType() string { return TypeAgentRequested }

// EventType implements Payload.
func (AgentCancelRequested) EventType() string { return TypeAgentCancelRequested }

// EventType implements Payload.
func (StepPlanned) EventType() string { return TypeStepPlanned }

// EventType implements Payload.
func (ToolInvocationRequested) EventType() string { return TypeToolInvocationRequested }

// EventType implements Payload.
func (ToolInvocationCompleted) EventType() string { return TypeToolInvocationCompleted }

// EventType implements Payload.
func (ToolInvocationFailed) EventType() string { return TypeToolInvocationFailed }

// EventType implements Payload.
func (StepCompleted) EventType() string { return TypeStepCompleted }

// EventType implements Payload.
func (AgentCompleted) EventType() string { return TypeAgentCompleted }

// EventType implements Payload.
func (AgentFailed) EventType() string { return TypeAgentFailed }

// EventType implements Payload.
func (AgentCancelled) EventType() string { return TypeAgentCancelled }

// EventType implements Payload.
func (ApprovalRequested) EventType() string { return TypeApprovalRequested }

// EventType implements Payload.
func (ApprovalDecided) EventType() string { return TypeApprovalDecided }

// EventType implements Payload.
func (SagaStarted) EventType() string { return TypeSagaStarted }

// EventType implements Payload.
func (SagaCompleted) EventType() string { return TypeSagaCompleted }

// EventType implements Payload.
func (SagaCompensated) EventType() string { return TypeSagaCompensated }

// EventType implements Payload.
func (SagaCompensationFailed) EventType() string { return TypeSagaCompensationFailed }

func (d StepPlanned) routingStep() int             { return d.Step }
func (d StepCompleted) routingStep() int           { return d.Step }
func (d ToolInvocationRequested) routingStep() int { return d.Step }
func (d ToolInvocationCompleted) routingStep() int { return d.Step }
func (d ToolInvocationFailed) routingStep() int    { return d.Step }
func (d ApprovalRequested) routingStep() int       { return d.Step }

func (d ToolInvocationRequested) routingTool() string { return d.Tool }
func (d ToolInvocationCompleted) routingTool() string { return d.Tool }
func (d ToolInvocationFailed) routingTool() string    { return d.Tool }
func (d ApprovalRequested) routingTool() string       { return d.Tool }

// IdempotencyKey is the key of one tool call: "<sessionid>/<step>/<callId>".
func IdempotencyKey(sessionID string, step int, callID string) string {
	return sessionID + "/" + strconv.Itoa(step) + "/" + callID
}
