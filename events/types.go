package events

// CloudEvents type strings. A type is versioned: additive changes keep the
// version (schemas accept unknown fields), a breaking change is a new .v2 type.
const (
	TypeAgentRequested          = "agentbus.agent.requested.v1"
	TypeAgentCancelRequested    = "agentbus.agent.cancelrequested.v1"
	TypeStepPlanned             = "agentbus.step.planned.v1"
	TypeToolInvocationRequested = "agentbus.tool.invocation.requested.v1"
	TypeToolInvocationCompleted = "agentbus.tool.invocation.completed.v1"
	TypeToolInvocationFailed    = "agentbus.tool.invocation.failed.v1"
	TypeStepCompleted           = "agentbus.step.completed.v1"
	TypeAgentCompleted          = "agentbus.agent.completed.v1"
	TypeAgentFailed             = "agentbus.agent.failed.v1"
	TypeAgentCancelled          = "agentbus.agent.cancelled.v1"
	TypeApprovalRequested       = "agentbus.approval.requested.v1"
	TypeApprovalDecided         = "agentbus.approval.decided.v1"
	TypeSagaStarted             = "agentbus.saga.started.v1"
	TypeSagaCompleted           = "agentbus.saga.completed.v1"
	TypeSagaCompensated         = "agentbus.saga.compensated.v1"
	TypeSagaCompensationFailed  = "agentbus.saga.compensationfailed.v1"
)

// TypePrefix starts every agentbus event type; the memory service's rule
// matches it as a prefix on detail-type.
const TypePrefix = "agentbus."

// Types lists every event type of the contract, in the order of the docs.
func Types() []string {
	return []string{
		TypeAgentRequested, TypeAgentCancelRequested, TypeStepPlanned,
		TypeToolInvocationRequested, TypeToolInvocationCompleted, TypeToolInvocationFailed,
		TypeStepCompleted, TypeAgentCompleted, TypeAgentFailed, TypeAgentCancelled,
		TypeApprovalRequested, TypeApprovalDecided,
		TypeSagaStarted, TypeSagaCompleted, TypeSagaCompensated, TypeSagaCompensationFailed,
	}
}

// CloudEvents source strings of the project's own producers. Callers and
// plug-ins may use their own source; uniqueness is source + id.
const (
	SourceClient      = "agentbus/client"
	SourcePlanner     = "agentbus/planner"
	SourceExecutor    = "agentbus/executor"
	SourceToolGateway = "agentbus/toolgateway"
	SourceMemory      = "agentbus/memory"
	SourceSaga        = "agentbus/saga"
	SourceApproval    = "agentbus/approval"
)

// CloudEvents extension attribute names (lowercase, as the spec requires).
// Rules route on these, never on data, because data may be offloaded.
const (
	// ExtSessionID is the agent session; required on every event.
	ExtSessionID = "sessionid"
	// ExtTraceParent is the W3C traceparent (distributed-tracing extension); required.
	ExtTraceParent = "traceparent"
	// ExtTraceState is the optional W3C tracestate.
	ExtTraceState = "tracestate"
	// ExtToolName is the tool name; required on every ToolInvocation* event.
	ExtToolName = "toolname"
	// ExtStep is the integer step number; required on step and tool events.
	ExtStep = "step"
	// ExtDataRef is the CloudEvents dataref extension a claim check sets
	// when it moves data to a blob store.
	ExtDataRef = "dataref"
)

// ContentTypeJSON is the datacontenttype of every agentbus event.
const ContentTypeJSON = "application/json"

// ToolFailureReason says why a tool call failed (ToolInvocationFailed.reason
// and StepCompleted.results[].reason).
type ToolFailureReason string

// Tool failure reasons.
const (
	ToolUnknown        ToolFailureReason = "unknown_tool"
	ToolInvalidInput   ToolFailureReason = "invalid_input"
	ToolTimeout        ToolFailureReason = "timeout"
	ToolError          ToolFailureReason = "tool_error"
	ToolOutcomeUnknown ToolFailureReason = "outcome_unknown"
	ToolNotAllowed     ToolFailureReason = "not_allowed"
)

// AgentFailureReason is the machine-readable reason of AgentFailed.
type AgentFailureReason string

// Agent failure reasons.
const (
	AgentMaxSteps       AgentFailureReason = "max_steps"
	AgentTokenBudget    AgentFailureReason = "token_budget"
	AgentDeadline       AgentFailureReason = "deadline"
	AgentModelError     AgentFailureReason = "model_error"
	AgentToolNotAllowed AgentFailureReason = "tool_not_allowed"
	AgentInvalidRequest AgentFailureReason = "invalid_request"
	AgentInternal       AgentFailureReason = "internal"
)
