// Package model declares one model turn as agentbus needs it: a system prompt,
// a conversation (user and assistant text, tool-use requests, tool results),
// tool specs with JSON Schema inputs and a cap on output tokens go in; the
// assistant's text and/or tool-use requests, why it stopped, and token usage
// come out.
//
// Implementations: platform/model/scripted (offline, deterministic, driven by
// a script file) and platform/model/bedrock (Amazon Bedrock Converse). Both
// pass the conformance suite in platform/model/modeltest.
//
// Errors are classified with sentinel kinds (ErrThrottled, ErrTransient,
// ErrInvalidRequest, ErrAccessDenied, ErrModelNotFound, ErrModel) so callers can
// tell a retryable failure from a permanent one with errors.Is, or with
// Retryable. Implementations retry retryable failures themselves (bounded);
// an error they return has already been retried.
package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Model produces one assistant turn for a conversation. Implementations are
// safe for concurrent use and keep no per-conversation state between calls:
// everything a turn depends on is in the Request.
type Model interface {
	Converse(ctx context.Context, req Request) (Response, error)
}

// Func adapts a function to Model (handy for tests and middleware).
type Func func(ctx context.Context, req Request) (Response, error)

// Converse calls f.
func (f Func) Converse(ctx context.Context, req Request) (Response, error) { return f(ctx, req) }

var _ Model = Func(nil)

// Role is who authored a message.
type Role string

// Roles of a conversation. Tool results travel in user messages, as in the
// Converse API.
const (
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
)

// Request is the input of one model turn.
type Request struct {
	// ModelID selects the model; empty means the implementation's default
	// (for Bedrock, the model id it was constructed with).
	ModelID string
	// System is the system prompt; empty means none.
	System string
	// Messages is the conversation so far, oldest first. It must start with a
	// user message and roles must alternate (user, assistant, user, ...).
	Messages []Message
	// Tools the model may ask to use. Empty means no tool use is offered.
	Tools []ToolSpec
	// MaxTokens caps the output tokens of this turn; 0 means the model's
	// default. The planner sets it to min(agent cap, remaining budget).
	MaxTokens int
}

// Message is one message of a conversation: a role and its content blocks in
// order.
type Message struct {
	Role    Role    `json:"role"`
	Content []Block `json:"content"`
}

// Block is one content block. Exactly one of Text (non-empty), ToolUse and
// ToolResult is set; use TextBlock, ToolUseBlock or ToolResultBlock.
type Block struct {
	Text       string      `json:"text,omitempty"`
	ToolUse    *ToolUse    `json:"toolUse,omitempty"`
	ToolResult *ToolResult `json:"toolResult,omitempty"`
}

// ToolUse is the model's request to call a tool (in an assistant message and
// in Response.ToolUses).
type ToolUse struct {
	// ID identifies this call within the conversation; the matching
	// ToolResult carries it back.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Input is the tool's input, a JSON object.
	Input json.RawMessage `json:"input"`
}

// ToolResult is the outcome of one tool call, sent back in a user message.
type ToolResult struct {
	ToolUseID string `json:"toolUseId"`
	// Content is the tool's output as JSON (any value). A JSON string is
	// passed to the model as text, an object as a JSON document, any other
	// value as its JSON text.
	Content json.RawMessage `json:"content"`
	// IsError marks a failed call; Content then describes the failure
	// (e.g. {"reason":"timeout","message":"..."}).
	IsError bool `json:"isError,omitempty"`
}

// TextBlock returns a text content block.
func TextBlock(s string) Block { return Block{Text: s} }

// ToolUseBlock returns a tool-use content block.
func ToolUseBlock(u ToolUse) Block { return Block{ToolUse: &u} }

// ToolResultBlock returns a tool-result content block.
func ToolResultBlock(r ToolResult) Block { return Block{ToolResult: &r} }

// UserText returns a user message holding one text block.
func UserText(s string) Message { return Message{Role: RoleUser, Content: []Block{TextBlock(s)}} }

// ToolSpec describes a tool the model may call.
type ToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// InputSchema is a JSON Schema (an object schema) for the tool's input.
	InputSchema json.RawMessage `json:"inputSchema"`
}

// Response is the output of one model turn.
type Response struct {
	// Text is the assistant's text (the final answer when StopReason is
	// end_turn; optional commentary next to tool uses). Several text blocks
	// are joined with "\n".
	Text string
	// ToolUses are the tools the model asks to call, in order; several mean
	// parallel calls. Non-empty normally comes with StopReasonToolUse.
	ToolUses   []ToolUse
	StopReason StopReason
	Usage      Usage
}

// Message returns the assistant message that records this response in the
// conversation (text first, then tool uses), ready to append to
// Request.Messages for the next turn.
func (r Response) Message() Message {
	m := Message{Role: RoleAssistant}
	if r.Text != "" {
		m.Content = append(m.Content, TextBlock(r.Text))
	}
	for _, u := range r.ToolUses {
		m.Content = append(m.Content, ToolUseBlock(u))
	}
	return m
}

// Usage counts the tokens of one call.
type Usage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
}

// Total is InputTokens + OutputTokens.
func (u Usage) Total() int { return u.InputTokens + u.OutputTokens }

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// StopReason says why the model stopped. The constants cover every value of
// the Bedrock SDK's types.StopReason; a value a newer API returns that is not
// listed here is passed through unchanged (Known reports false).
type StopReason string

// Stop reasons.
const (
	StopEndTurn                    StopReason = "end_turn"
	StopToolUse                    StopReason = "tool_use"
	StopMaxTokens                  StopReason = "max_tokens"
	StopStopSequence               StopReason = "stop_sequence"
	StopGuardrailIntervened        StopReason = "guardrail_intervened"
	StopContentFiltered            StopReason = "content_filtered"
	StopMalformedModelOutput       StopReason = "malformed_model_output"
	StopMalformedToolUse           StopReason = "malformed_tool_use"
	StopModelContextWindowExceeded StopReason = "model_context_window_exceeded"
)

// StopReasons lists every known stop reason.
func StopReasons() []StopReason {
	return []StopReason{
		StopEndTurn, StopToolUse, StopMaxTokens, StopStopSequence, StopGuardrailIntervened,
		StopContentFiltered, StopMalformedModelOutput, StopMalformedToolUse, StopModelContextWindowExceeded,
	}
}

// Known reports whether s is one of the listed stop reasons.
func (s StopReason) Known() bool {
	for _, k := range StopReasons() {
		if s == k {
			return true
		}
	}
	return false
}

// Error kinds. Every error an implementation returns matches exactly one of
// them with errors.Is (or is a context error: context.Canceled or
// context.DeadlineExceeded of the caller's ctx).
var (
	// ErrThrottled: the provider rejected the call for rate or quota
	// (Bedrock ThrottlingException, ServiceQuotaExceededException). Retryable.
	ErrThrottled = errors.New("model: throttled")
	// ErrTransient: a failure that may go away (5xx, ServiceUnavailable,
	// ModelNotReady, a per-call timeout, a network error). Retryable.
	ErrTransient = errors.New("model: transient failure")
	// ErrInvalidRequest: the request is malformed or unacceptable
	// (ValidationException, a Request that fails Validate). Not retryable.
	ErrInvalidRequest = errors.New("model: invalid request")
	// ErrAccessDenied: the caller may not use the model (AccessDeniedException,
	// model access not granted). Not retryable.
	ErrAccessDenied = errors.New("model: access denied")
	// ErrModelNotFound: the model id does not exist in the region
	// (ResourceNotFoundException). Not retryable.
	ErrModelNotFound = errors.New("model: model not found")
	// ErrModel: any other permanent failure of the provider or the model
	// (e.g. ModelErrorException, an unparseable response). Not retryable.
	ErrModel = errors.New("model: model error")
)

// Retryable reports whether err is of a retryable kind (ErrThrottled or
// ErrTransient) and not the end of the caller's ctx (a retry loop cut short
// by cancellation returns both; it must not be retried).
func Retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrTransient)
}

// Error is a classified model failure. errors.Is matches its Kind and
// anything Err wraps; errors.As reaches the provider's own error through Err.
type Error struct {
	Kind error  // one of the Err* kinds above
	Op   string // what failed, e.g. "bedrock converse" or "scripted"
	// Attempts is how many calls were made (1 when not retried).
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	s := e.Op + ": " + e.Kind.Error()
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (after %d attempts)", e.Attempts)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap exposes both the kind and the cause to errors.Is / errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Validate checks the shape rules every implementation enforces: at least
// one message, first message from the user, alternating roles, non-empty
// content, exactly one part per block, tool-use inputs that are JSON objects,
// tool results only in user messages, tool results that answer a tool use of
// the previous assistant message, every tool use of an assistant message
// answered in the next message (as Bedrock requires), unique non-empty tool
// names, object input schemas, MaxTokens >= 0. Errors wrap ErrInvalidRequest.
func (r Request) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, a...))
	}
	if r.MaxTokens < 0 {
		return bad("maxTokens %d is negative", r.MaxTokens)
	}
	if len(r.Messages) == 0 {
		return bad("no messages")
	}
	names := map[string]bool{}
	for i, t := range r.Tools {
		if t.Name == "" {
			return bad("tool %d has no name", i)
		}
		if names[t.Name] {
			return bad("tool %q listed twice", t.Name)
		}
		names[t.Name] = true
		if !isJSONObject(t.InputSchema) {
			return bad("tool %q: inputSchema is not a JSON object", t.Name)
		}
	}
	var prevUses map[string]bool
	for i, m := range r.Messages {
		want := RoleUser
		if i%2 == 1 {
			want = RoleAssistant
		}
		if m.Role != want {
			return bad("message %d has role %q, want %q (roles alternate, starting with user)", i, m.Role, want)
		}
		if len(m.Content) == 0 {
			return bad("message %d has no content", i)
		}
		uses := map[string]bool{}
		for j, b := range m.Content {
			n := 0
			if b.Text != "" {
				n++
			}
			if b.ToolUse != nil {
				n++
			}
			if b.ToolResult != nil {
				n++
			}
			if n != 1 {
				return bad("message %d block %d has %d parts, want exactly one", i, j, n)
			}
			switch {
			case b.ToolUse != nil:
				if m.Role != RoleAssistant {
					return bad("message %d block %d: toolUse in a %s message", i, j, m.Role)
				}
				if b.ToolUse.ID == "" || b.ToolUse.Name == "" {
					return bad("message %d block %d: toolUse needs id and name", i, j)
				}
				if !isJSONObject(b.ToolUse.Input) {
					return bad("message %d block %d: toolUse input is not a JSON object", i, j)
				}
				uses[b.ToolUse.ID] = true
			case b.ToolResult != nil:
				if m.Role != RoleUser {
					return bad("message %d block %d: toolResult in a %s message", i, j, m.Role)
				}
				if !prevUses[b.ToolResult.ToolUseID] {
					return bad("message %d block %d: toolResult for %q answers no toolUse of the previous message", i, j, b.ToolResult.ToolUseID)
				}
				if len(b.ToolResult.Content) == 0 || !json.Valid(b.ToolResult.Content) {
					return bad("message %d block %d: toolResult content is not valid JSON", i, j)
				}
			}
		}
		if missing := unanswered(prevUses, m); m.Role == RoleUser && missing != "" {
			return bad("message %d: no toolResult for toolUse %q of the previous message", i, missing)
		}
		prevUses = uses
	}
	return nil
}

// unanswered returns a tool-use id of uses that m carries no result for
// (smallest id, for a stable message), or "".
func unanswered(uses map[string]bool, m Message) string {
	answered := map[string]bool{}
	for _, b := range m.Content {
		if b.ToolResult != nil {
			answered[b.ToolResult.ToolUseID] = true
		}
	}
	missing := ""
	for id := range uses {
		if !answered[id] && (missing == "" || id < missing) {
			missing = id
		}
	}
	return missing
}

// isJSONObject reports whether raw is valid JSON whose value is an object;
// checked without decoding it, since every model call checks every tool's
// schema.
func isJSONObject(raw json.RawMessage) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}
