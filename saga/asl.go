package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The Amazon States Language the generator writes. Both runners implement
// the same semantics; docs/sagas.md describes the shape state by state.
const (
	// ResourceSQSWaitForTaskToken is the Task resource of every step: send
	// the task to the saga queue and wait for SendTaskSuccess/Failure.
	ResourceSQSWaitForTaskToken = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
	// QueueURLVariable is the Terraform template variable TerraformTemplate
	// leaves where the saga queue's URL goes.
	QueueURLVariable = "queue_url"
)

// ErrorCompensatedRuntime is the error of an execution that compensated
// after a step failed with a runtime error (States.Timeout,
// States.HeartbeatTimeout, …). A Fail state may not raise a name starting
// with "States." (the ASL spec reserves them; moto's interpreter fails the
// execution with States.Runtime instead), so such an error is reported only
// in the cause, like every original error.
const ErrorCompensatedRuntime = "agentbus.Compensated"

// StateName returns the ASL state names of a step: its action Task, the
// Pass state its Catch goes to, and its compensation Task.
func StateName(step string) (action, failed, undo string) {
	return step, prefixFailed + step, prefixUndo + step
}

// Names of the generated terminal and bookkeeping states.
const (
	StateCheckCompensation  = stateCheckCompensation
	StateCheckError         = stateCheckError
	StateCompensated        = stateCompensated
	StateCompensatedRuntime = stateCompensatedRuntime
	StateCompensationFailed = stateCompensationFailed
	StateDone               = stateDone
	StateSucceeded          = stateSucceeded
)

// member/object: a JSON object that keeps its members in the order written,
// so the generated document reads in execution order and is byte-stable.
type member struct {
	k string
	v any
}

type object []member

func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := encodeJSON(m.k)
		if err != nil {
			return nil, err
		}
		v, err := encodeJSON(m.v)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// ASL generates the saga's state machine (Amazon States Language, JSONPath
// query language) for Step Functions, with every Task sending to the saga
// queue queueURL. The output is indented JSON and deterministic: the same
// definition and URL give the same bytes.
//
// Execution input is {"session", "saga", "input", "steps": {}}. Step k is
// a Task that stores its result at $.steps.<step>; its Retry retries only
// agentbus.ToolError; its Catch (States.ALL) stores the error at $.failure
// and goes to Failed_<step>, which records {failedStep, error, cause} at
// $.failure and enters the compensation chain: Undo_<s> for every earlier
// step s with a compensation, in reverse order. An Undo stores its result
// at $.failure.compensated.<s>; if it still fails after its retries its
// Catch stores the error at $.failure.compensationFailures.<s> and the
// chain goes on. CheckCompensation then ends in CompensationFailed
// (error agentbus.CompensationFailed) or, through CheckError, Compensated
// (the original error) or CompensatedRuntimeError (a States.* error, which
// a Fail state may not raise); all three Fail states' cause is the JSON of
// $.failure.
//
// A template path that may be missing at run time is checked first by a
// Choice (Refs-<step>, RefsUndo-<step>, Refs-output: IsPresent on each);
// a missing one fails like the embedded runner's agentbus.InvalidInput
// (Missing-<step>, MissingUndo-<step>, Missing-output) instead of ending
// the execution with an uncatchable States.Runtime. A missing output path
// compensates every step, the last one included, with failedStep "".
func ASL(d Definition, queueURL string) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if queueURL == "" {
		return nil, errors.New("saga: ASL: empty queue URL")
	}
	states := object{}
	add := func(name string, s object) { states = append(states, member{name, s}) }

	// Templates are checked before they are used: a Parameters path that
	// does not resolve fails the state with States.Runtime, which Step
	// Functions' Catch does not catch — the saga would end without
	// compensating. A Choice (IsPresent on every path that may be missing)
	// turns it into the failure the embedded runner reports instead:
	// agentbus.InvalidInput, compensated like any other.
	outRefs := guardedRefs(d.Output)

	// undoEntry[i] is where the compensation of the steps before step i
	// starts: the Undo (or its guard) of the nearest earlier step with a
	// compensation that can run, or "" when there is none. The last step's
	// compensation runs only when the output template can fail after it.
	undoEntry := make([]string, len(d.Steps)+1)
	hasUndo := func(i int) bool {
		return d.Steps[i].Compensation != nil && (i < len(d.Steps)-1 || len(outRefs) > 0)
	}
	for i, s := range d.Steps {
		undoEntry[i+1] = undoEntry[i]
		if hasUndo(i) {
			_, _, undo := StateName(s.Name)
			undoEntry[i+1] = guardedEntry(undo, prefixRefsUndo+s.Name, guardedRefs(s.Compensation.Input))
		}
	}
	orCheckError := func(n string) string {
		if n == "" {
			return StateCheckError
		}
		return n
	}
	entry := func(i int) string {
		if i == len(d.Steps) {
			return guardedEntry(StateDone, stateRefsOutput, outRefs)
		}
		action, _, _ := StateName(d.Steps[i].Name)
		return guardedEntry(action, prefixRefs+d.Steps[i].Name, guardedRefs(d.Steps[i].Action.Input))
	}

	for i, s := range d.Steps {
		action, failed, _ := StateName(s.Name)
		if refs := guardedRefs(s.Action.Input); len(refs) > 0 {
			add(prefixRefs+s.Name, guardState(refs, action, prefixMissing+s.Name))
			add(prefixMissing+s.Name, object{
				{"Type", "Pass"},
				{"Comment", "A path the action's input reads is missing: fail the step as the embedded runner does."},
				{"Result", object{{"Error", ErrorInvalidInput}, {"Cause", missingCause("action input", refs)}}},
				{"ResultPath", "$.failure"},
				{"Next", failed},
			})
		}
		task, err := taskState(d, queueURL, s, kindAction, s.Action, "$.steps."+s.Name)
		if err != nil {
			return nil, err
		}
		task = append(task,
			member{"Catch", []object{{
				{"ErrorEquals", []string{"States.ALL"}},
				{"ResultPath", "$.failure"},
				{"Next", failed},
			}}},
			member{"Next", entry(i + 1)},
		)
		add(action, task)
		add(failed, object{
			{"Type", "Pass"},
			{"Comment", fmt.Sprintf("Step %s failed: record it, then undo the earlier steps.", s.Name)},
			{"Parameters", object{
				{"failedStep", s.Name},
				{"error.$", "$.failure.Error"},
				{"cause.$", "$.failure.Cause"},
			}},
			{"ResultPath", "$.failure"},
			{"Next", orCheckError(undoEntry[i])},
		})
	}

	// The compensation chain, latest step first. An Undo state exists only
	// where it can run (Step Functions rejects unreachable states).
	anyUndo := false
	for i := len(d.Steps) - 1; i >= 0; i-- {
		if !hasUndo(i) {
			continue
		}
		anyUndo = true
		s := d.Steps[i]
		_, _, undo := StateName(s.Name)
		next := undoEntry[i]
		if next == "" {
			next = StateCheckCompensation
		}
		if refs := guardedRefs(s.Compensation.Input); len(refs) > 0 {
			add(prefixRefsUndo+s.Name, guardState(refs, undo, prefixMissingUndo+s.Name))
			add(prefixMissingUndo+s.Name, object{
				{"Type", "Pass"},
				{"Comment", "A path the compensation's input reads is missing: record the compensation as failed and go on."},
				{"Result", object{{"Error", ErrorInvalidInput}, {"Cause", missingCause("compensation input", refs)}}},
				{"ResultPath", "$.failure.compensationFailures." + s.Name},
				{"Next", next},
			})
		}
		task, err := taskState(d, queueURL, s, kindCompensation, *s.Compensation, "$.failure.compensated."+s.Name)
		if err != nil {
			return nil, err
		}
		task = append(task,
			member{"Catch", []object{{
				{"ErrorEquals", []string{"States.ALL"}},
				{"ResultPath", "$.failure.compensationFailures." + s.Name},
				{"Next", next},
			}}},
			member{"Next", next},
		)
		add(undo, task)
	}

	if anyUndo {
		add(StateCheckCompensation, object{
			{"Type", "Choice"},
			{"Choices", []object{{
				{"Variable", "$.failure.compensationFailures"},
				{"IsPresent", true},
				{"Next", StateCompensationFailed},
			}}},
			{"Default", StateCheckError},
		})
		add(StateCompensationFailed, object{
			{"Type", "Fail"},
			{"Comment", "A compensation failed after its retries; the others ran. The cause is the JSON of $.failure."},
			{"Error", ErrorCompensationFailed},
			{"CausePath", "States.JsonToString($.failure)"},
		})
	}
	add(StateCheckError, object{
		{"Type", "Choice"},
		{"Choices", []object{{
			{"Variable", "$.failure.error"},
			{"StringMatches", "States.*"},
			{"Next", StateCompensatedRuntime},
		}}},
		{"Default", StateCompensated},
	})
	add(StateCompensated, object{
		{"Type", "Fail"},
		{"Comment", "A step failed and the earlier steps were undone: the error is the step's; the cause is the JSON of $.failure."},
		{"ErrorPath", "$.failure.error"},
		{"CausePath", "States.JsonToString($.failure)"},
	})
	add(StateCompensatedRuntime, object{
		{"Type", "Fail"},
		{"Comment", "As Compensated, for a runtime (States.*) error, which a Fail state may not raise: the step's error is in the cause."},
		{"Error", ErrorCompensatedRuntime},
		{"CausePath", "States.JsonToString($.failure)"},
	})

	if len(outRefs) > 0 {
		add(stateRefsOutput, guardState(outRefs, StateDone, stateMissingOutput))
		// Every step succeeded but the result cannot be built: undo them
		// all, as the embedded runner does (no step failed: failedStep is
		// empty).
		add(stateMissingOutput, object{
			{"Type", "Pass"},
			{"Comment", "A path the output template reads is missing: undo every step."},
			{"Result", object{{"failedStep", ""}, {"error", ErrorInvalidInput}, {"cause", missingCause("output template", outRefs)}}},
			{"ResultPath", "$.failure"},
			{"Next", orCheckError(undoEntry[len(d.Steps)])},
		})
	}
	done := object{{"Type", "Pass"}}
	out, err := parameters(d.Output)
	if err != nil {
		return nil, err
	}
	if out != nil {
		done = append(done, member{"Parameters", out})
	} else {
		done = append(done, member{"OutputPath", "$.steps"})
	}
	add(StateDone, append(done, member{"Next", StateSucceeded}))
	add(StateSucceeded, object{{"Type", "Succeed"}})

	machine := object{
		{"Comment", fmt.Sprintf("Saga %s, generated by agentbus from its definition: do not edit.", d.Name)},
		{"StartAt", entry(0)},
		{"States", states},
	}
	b, err := encodeJSON(machine)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// Names of the reference guards (a Choice and the Pass of its "missing"
// branch). They contain a hyphen, which step names cannot, so they never
// collide with a step's states.
const (
	prefixRefs         = "Refs-"
	prefixMissing      = "Missing-"
	prefixRefsUndo     = "RefsUndo-"
	prefixMissingUndo  = "MissingUndo-"
	stateRefsOutput    = "Refs-output"
	stateMissingOutput = "Missing-output"
)

// guardedRefs lists the references of a template that may be missing at
// run time, sorted: all but "$.input" and "$.steps.<step>" whole (the
// execution input always has "input", and a step that ran always has its
// result).
func guardedRefs(tmpl json.RawMessage) []string {
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return nil
	}
	v, err := decodeJSON(tmpl)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if !isRef(v) {
				return
			}
			segs := strings.Split(v[len(refPrefix):], ".")
			if (segs[0] == "input" && len(segs) == 1) || (segs[0] == "steps" && len(segs) <= 2) {
				return
			}
			seen[v] = true
		}
	}
	walk(v)
	out := make([]string, 0, len(seen))
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// guardedEntry is the state to enter for a state whose template reads
// refs: its guard when there are any.
func guardedEntry(state, guard string, refs []string) string {
	if len(refs) == 0 {
		return state
	}
	return guard
}

// guardState is the Choice that goes to next when every path in refs is
// present, else to missing.
func guardState(refs []string, next, missing string) object {
	present := func(r string) object { return object{{"Variable", r}, {"IsPresent", true}} }
	var rule object
	if len(refs) == 1 {
		rule = append(present(refs[0]), member{"Next", next})
	} else {
		all := make([]object, len(refs))
		for i, r := range refs {
			all[i] = present(r)
		}
		rule = object{{"And", all}, {"Next", next}}
	}
	return object{
		{"Type", "Choice"},
		{"Choices", []object{rule}},
		{"Default", missing},
	}
}

// missingCause is the cause of a failure for a missing template path.
func missingCause(what string, refs []string) string {
	return fmt.Sprintf("%s: %v: one of %s", what, ErrPath, strings.Join(refs, ", "))
}

// Task kinds, as the task message's "kind" (platform/saga.Kind).
const (
	kindAction       = "action"
	kindCompensation = "compensation"
)

// taskState is the SQS waitForTaskToken Task of one call, without its
// Catch and Next.
func taskState(d Definition, queueURL string, s Step, kind string, c Call, resultPath string) (object, error) {
	in, err := parameters(c.Input)
	if err != nil {
		return nil, fmt.Errorf("saga: ASL: step %s %s input: %w", s.Name, kind, err)
	}
	if in == nil {
		in = object{}
	}
	body := object{
		{"taskToken.$", "$$.Task.Token"},
		{"execution.$", "$$.Execution.Name"},
		{"session.$", "$.session"},
		{"saga", d.Name},
		{"step", s.Name},
		{"kind", kind},
		{"tool", c.Tool},
		{"input", in},
		{"timeoutSeconds", s.EffectiveTimeoutSeconds()},
		{"heartbeatSeconds", s.HeartbeatSeconds},
		{"attempt.$", "$$.State.RetryCount"},
	}
	t := object{
		{"Type", "Task"},
		{"Resource", ResourceSQSWaitForTaskToken},
		{"Parameters", object{
			{"QueueUrl", queueURL},
			{"MessageBody", body},
		}},
		{"ResultPath", resultPath},
		{"TimeoutSeconds", s.EffectiveTimeoutSeconds()},
	}
	if s.HeartbeatSeconds > 0 {
		t = append(t, member{"HeartbeatSeconds", s.HeartbeatSeconds})
	}
	if r := s.EffectiveRetry(); r.MaxAttempts > 0 {
		// ASL requires IntervalSeconds >= 1; a definition's 0 (retry at
		// once, honoured by the embedded runner) runs as 1 s here.
		t = append(t, member{"Retry", []object{{
			{"ErrorEquals", []string{ErrorTool}},
			{"IntervalSeconds", max(1, r.IntervalSeconds)},
			{"MaxAttempts", r.MaxAttempts},
			{"BackoffRate", r.BackoffRate},
		}}})
	}
	return t, nil
}

// parameters turns a template into an ASL payload template: a reference
// "k": "$.path" becomes "k.$": "$.path"; everything else is literal (Validate
// has rejected references inside arrays and keys ending in ".$"). An empty
// template is nil.
func parameters(tmpl json.RawMessage) (object, error) {
	if len(bytes.TrimSpace(tmpl)) == 0 {
		return nil, nil
	}
	v, err := decodeJSON(tmpl)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("template is not a JSON object")
	}
	return payload(m), nil
}

func payload(m map[string]any) object {
	o := object{}
	for _, k := range sortedKeys(m) {
		switch v := m[k].(type) {
		case map[string]any:
			o = append(o, member{k, payload(v)})
		case string:
			if isRef(v) {
				o = append(o, member{k + ".$", v})
			} else {
				o = append(o, member{k, v})
			}
		default:
			o = append(o, member{k, v})
		}
	}
	return o
}

// TerraformTemplate is the state machine as a Terraform template file:
// ASL with the queue URL left as ${queue_url} and any other "${" or "%{"
// escaped, so that templatefile(path, {queue_url = …}) yields exactly
// ASL(d, queueURL). Commit its output and point the saga module's
// definition_file at it.
func TerraformTemplate(d Definition) ([]byte, error) {
	// A sentinel no valid definition can contain stands for the URL while
	// the rest of the text is escaped.
	const sentinel = "\x00queue-url\x00"
	b, err := ASL(d, sentinel)
	if err != nil {
		return nil, err
	}
	s := string(b)
	s = strings.ReplaceAll(s, "${", "$${")
	s = strings.ReplaceAll(s, "%{", "%%{")
	enc, err := encodeJSON(sentinel)
	if err != nil {
		return nil, err
	}
	inner := string(enc[1 : len(enc)-1])
	// The sentinel must come from the queue URL only.
	plain, err := ASL(d, "https://queue.invalid/")
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(plain), inner) {
		return nil, errors.New("saga: TerraformTemplate: the definition contains the queue URL placeholder")
	}
	return []byte(strings.ReplaceAll(s, inner, "${"+QueueURLVariable+"}")), nil
}
