package sagatest

import (
	"encoding/json"

	"github.com/agentbus/agentbus/saga"
)

// The suite's saga names (each Definition's Name).
const (
	// SagaLinear: steps a, b, c, d (tools step_a..step_d), each with its
	// compensation (undo_a..undo_d); b reads a's output, c b's, d c's; one
	// retry after 1 s; output {"a", "d", "amount"}.
	SagaLinear = "sagatest_linear"
	// SagaGap: steps a, b, c, d where b has no compensation.
	SagaGap = "sagatest_gap"
	// SagaSlow: step a, then step "slow" (tool slow, sleeping input.ms
	// from the saga input's "ms") with HeartbeatSeconds 2 and a 15 s
	// timeout, then step b. (A 1 s heartbeat timeout was too tight for a
	// loaded moto: a late heartbeat timed the step out.)
	SagaSlow = "sagatest_slow"
	// SagaTimeout: step a, then "slow" with a 1 s timeout and no retry.
	SagaTimeout = "sagatest_timeout"
	// SagaCrash: steps a, b, c with compensations and CrashTimeoutSeconds
	// each (the crash cases).
	SagaCrash = "sagatest_crash"
	// SagaIdem: step a, then "idem" (tool step_idem, idempotent), then b.
	SagaIdem = "sagatest_idem"
	// SagaMissingOutput: steps a, b with compensations; the output
	// template reads a field b's output lacks, so every step is undone.
	SagaMissingOutput = "sagatest_missing_output"
	// SagaMissingInput: steps a, b, c with compensations; b's input reads
	// a field a's output lacks, so b fails as invalid input (its tool never
	// runs) and a is undone.
	SagaMissingInput = "sagatest_missing_input"
)

// CrashTimeoutSeconds is the step timeout of SagaCrash and SagaIdem. A
// crashed worker's lease (the task's timeout plus a margin) must end before
// the task is taken over, so it bounds how long a crash case waits; on
// Step Functions, the redelivery of a crashed worker's task (the queue's
// visibility timeout) must come well before it, or the state times out.
const CrashTimeoutSeconds = 4

// MissingField is a field no Toolbox tool returns (the missing-path
// sagas read it).
const MissingField = "not_returned"

var inputSchema = json.RawMessage(`{"type":"object","properties":{"amount":{"type":"number"},"ms":{"type":"integer"}}}`)

// fast is the suite's retry policy: one retry after 1 s (the smallest
// interval Step Functions takes), no backoff growth.
var fast = saga.Retry{MaxAttempts: 1, IntervalSeconds: 1, BackoffRate: 1}

// noRetry retries nothing (MaxAttempts 0 with other fields set is not the
// default policy).
var noRetry = saga.Retry{MaxAttempts: 0, IntervalSeconds: 1, BackoffRate: 1}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func call(tool, input string) saga.Call { return saga.Call{Tool: tool, Input: raw(input)} }

func undo(tool, step string) *saga.Call {
	c := call(tool, `{"ref":"$.steps.`+step+`.ref"}`)
	return &c
}

// Definitions returns the suite's sagas, by name. Each call returns fresh
// values.
func Definitions() map[string]saga.Definition {
	linear := func(name string, gap bool) saga.Definition {
		d := saga.Definition{
			Name:        name,
			Description: "sagatest: four steps, each undone by its undo tool.",
			InputSchema: inputSchema,
			Steps: []saga.Step{
				{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: 10},
				{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.a.ref","amount":"$.input.amount"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: 10},
				{Name: "c", Action: call(ToolStepC, `{"prev":"$.steps.b.ref"}`), Compensation: undo(ToolUndoC, "c"), Retry: fast, TimeoutSeconds: 10},
				{Name: "d", Action: call(ToolStepD, `{"prev":"$.steps.c.ref","note":"literal"}`), Compensation: undo(ToolUndoD, "d"), Retry: fast, TimeoutSeconds: 10},
			},
			Output: raw(`{"a":"$.steps.a.ref","d":"$.steps.d","amount":"$.input.amount"}`),
		}
		if gap {
			d.Description = "sagatest: four steps; b has nothing to undo."
			d.Steps[1].Compensation = nil
			d.Output = nil
		}
		return d
	}
	crash := saga.Definition{
		Name:        SagaCrash,
		Description: "sagatest: three steps for the crash cases.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
			{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.a.ref"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
			{Name: "c", Action: call(ToolStepC, `{"prev":"$.steps.b.ref"}`), Compensation: undo(ToolUndoC, "c"), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
		},
		Output: raw(`{"a":"$.steps.a.ref","b":"$.steps.b.ref","c":"$.steps.c.ref"}`),
	}
	idem := saga.Definition{
		Name:        SagaIdem,
		Description: "sagatest: an idempotent step between two others.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
			{Name: "idem", Action: call(ToolIdem, `{"prev":"$.steps.a.ref"}`), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
			{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.idem.ref"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: CrashTimeoutSeconds},
		},
	}
	slow := saga.Definition{
		Name:        SagaSlow,
		Description: "sagatest: a long step that heartbeats.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: 10},
			{Name: "slow", Action: call(ToolSlow, `{"ms":"$.input.ms"}`), Retry: noRetry, TimeoutSeconds: 15, HeartbeatSeconds: 2},
			{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.slow.ref"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: 10},
		},
		Output: raw(`{"slow":"$.steps.slow.ref","b":"$.steps.b.ref"}`),
	}
	timeout := saga.Definition{
		Name:        SagaTimeout,
		Description: "sagatest: a step that takes longer than its timeout.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: 10},
			{Name: "slow", Action: call(ToolSlow, `{"ms":"$.input.ms"}`), Retry: fast, TimeoutSeconds: 1},
		},
	}
	missingOutput := saga.Definition{
		Name:        SagaMissingOutput,
		Description: "sagatest: an output template reading a field no step returns.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: 10},
			{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.a.ref"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: 10},
		},
		Output: raw(`{"a":"$.steps.a.ref","missing":"$.steps.b.` + MissingField + `"}`),
	}
	missingInput := saga.Definition{
		Name:        SagaMissingInput,
		Description: "sagatest: a step input reading a field the earlier step does not return.",
		InputSchema: inputSchema,
		Steps: []saga.Step{
			{Name: "a", Action: call(ToolStepA, `{"amount":"$.input.amount"}`), Compensation: undo(ToolUndoA, "a"), Retry: fast, TimeoutSeconds: 10},
			{Name: "b", Action: call(ToolStepB, `{"prev":"$.steps.a.`+MissingField+`"}`), Compensation: undo(ToolUndoB, "b"), Retry: fast, TimeoutSeconds: 10},
			{Name: "c", Action: call(ToolStepC, `{"prev":"$.steps.b.ref"}`), Compensation: undo(ToolUndoC, "c"), Retry: fast, TimeoutSeconds: 10},
		},
	}
	out := map[string]saga.Definition{}
	for _, d := range []saga.Definition{linear(SagaLinear, false), linear(SagaGap, true), crash, idem, slow, timeout, missingOutput, missingInput} {
		out[d.Name] = d
	}
	return out
}
