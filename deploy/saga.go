package deploy

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/events/rules"
)

// SagaLogDeliveryActions are the CloudWatch Logs actions Step Functions
// logging needs on Resource "*" (all in StarResourceActions), and
// SagaTracingActions the X-Ray actions of tracing (also on "*").
var (
	SagaLogDeliveryActions = []string{
		"logs:CreateLogDelivery", "logs:DeleteLogDelivery", "logs:DescribeLogGroups", "logs:DescribeResourcePolicies",
		"logs:GetLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
	}
	SagaTracingActions = []string{"xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:PutTelemetryRecords", "xray:PutTraceSegments"}
)

// sagaTestVars are known stand-ins for the saga module's inputs.
func sagaTestVars(kmsKey string) map[string]cty.Value {
	v := map[string]cty.Value{
		"name":            cty.StringVal("book_trip"),
		"definition_file": cty.StringVal("../../sagas/book_trip.asl.json.tftpl"),
		"queue_url":       cty.StringVal("https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-saga"),
		"queue_arn":       cty.StringVal("arn:aws:sqs:us-east-1:123456789012:agentbus-saga"),
	}
	if kmsKey != "" {
		v["kms_key_arn"] = cty.StringVal(kmsKey)
	}
	return v
}

// CheckSagaModule checks the saga module's state machine role and state
// machine: the role's policy (its only one) sends only to the saga queue,
// grants on "*" exactly the log delivery and X-Ray actions, and uses the
// KMS key only when one is given; the state machine is STANDARD, runs with
// that role, is built from the definition template, and has logging and
// tracing on.
func CheckSagaModule(m *Module) []error {
	var errs []error
	const key = "arn:aws:kms:us-east-1:123456789012:key/test"
	for _, kms := range []string{"", key} {
		ev, err := NewEvaluator(m, sagaTestVars(kms))
		if err != nil {
			return []error{err}
		}
		var star, named []string
		for _, st := range PolicyStatements(ev) {
			if st.Doc != "this" {
				continue
			}
			errs = append(errs, st.Errs...)
			switch {
			case st.Effect != "Allow":
			case slices.Equal(st.Resources, []string{"*"}):
				star = append(star, st.Actions...)
			case slices.Equal(st.Actions, []string{"sqs:SendMessage"}):
				if !slices.Equal(st.Resources, []string{sagaTestVars("")["queue_arn"].AsString()}) {
					errs = append(errs, fmt.Errorf("%s: sqs:SendMessage on %v, want only the saga queue (var.queue_arn)", st.Range, st.Resources))
				}
				named = append(named, st.Actions...)
			case kms != "" && slices.Equal(st.Resources, []string{kms}):
				named = append(named, st.Actions...)
			default:
				errs = append(errs, fmt.Errorf("%s: statement %s grants %v on %v: the saga role sends to its queue, logs and traces, nothing else", st.Range, st.Sid, st.Actions, st.Resources))
			}
		}
		slices.Sort(star)
		wantStar := slices.Sorted(slices.Values(append(slices.Clone(SagaLogDeliveryActions), SagaTracingActions...)))
		if !slices.Equal(star, wantStar) {
			errs = append(errs, fmt.Errorf("saga role grants %v on \"*\", want exactly the log delivery and X-Ray actions %v", star, wantStar))
		}
		slices.Sort(named)
		wantNamed := []string{"sqs:SendMessage"}
		if kms != "" {
			wantNamed = []string{"kms:Decrypt", "kms:GenerateDataKey", "sqs:SendMessage"}
		}
		if !slices.Equal(named, wantNamed) {
			errs = append(errs, fmt.Errorf("saga role (kms key %q) grants %v on named resources, want %v", kms, named, wantNamed))
		}
	}

	policies, machines := 0, 0
	for k, b := range m.Resources {
		attrs, _ := b.Body.JustAttributes()
		switch b.Labels[0] {
		case "aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_policy_attachment":
			policies++
			if !refersTo(attrs["role"], "aws_iam_role", "this") || !refersTo(attrs["policy"], "data", "aws_iam_policy_document", "this") {
				errs = append(errs, fmt.Errorf("%s: %s: the role's only policy must be data.aws_iam_policy_document.this", b.DefRange, k))
			}
		case "aws_sfn_state_machine":
			machines++
			errs = append(errs, checkStateMachine(k, b.Body.(*hclsyntax.Body))...)
		}
	}
	if policies != 1 || machines != 1 {
		errs = append(errs, fmt.Errorf("saga module: %d role policies and %d state machines, want 1 and 1", policies, machines))
	}
	return errs
}

func checkStateMachine(key string, body *hclsyntax.Body) []error {
	var errs []error
	attr := func(name string) *hclsyntax.Attribute { return body.Attributes[name] }
	if a := attr("type"); a == nil || !isLiteral(a, "STANDARD") {
		errs = append(errs, fmt.Errorf("%s: %s must be type = \"STANDARD\" (sagas wait for task tokens for minutes; EXPRESS runs at-least-once)", body.SrcRange, key))
	}
	if a := attr("role_arn"); a == nil || !refersTo(a.AsHCLAttribute(), "aws_iam_role", "this") {
		errs = append(errs, fmt.Errorf("%s: %s must run with aws_iam_role.this", body.SrcRange, key))
	}
	if a := attr("definition"); a == nil || !isCall(a.Expr, "templatefile") || !refersTo(a.AsHCLAttribute(), "var", "definition_file") {
		errs = append(errs, fmt.Errorf("%s: %s: definition must be templatefile(var.definition_file, ...), the generated ASL", body.SrcRange, key))
	}
	var logging, tracing bool
	for _, b := range body.Blocks {
		switch b.Type {
		case "logging_configuration":
			logging = b.Body.Attributes["log_destination"] != nil && b.Body.Attributes["level"] != nil
		case "tracing_configuration":
			tracing = b.Body.Attributes["enabled"] != nil && isLiteral(b.Body.Attributes["enabled"], true)
		}
	}
	if !logging {
		errs = append(errs, fmt.Errorf("%s: %s has no logging_configuration with a destination and level", body.SrcRange, key))
	}
	if !tracing {
		errs = append(errs, fmt.Errorf("%s: %s must enable tracing", body.SrcRange, key))
	}
	return errs
}

func isCall(e hclsyntax.Expression, name string) bool {
	c, ok := e.(*hclsyntax.FunctionCallExpr)
	return ok && c.Name == name
}

// isLiteral reports whether a attribute is the constant want (a string or
// a bool).
func isLiteral(a *hclsyntax.Attribute, want any) bool {
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() {
		return false
	}
	switch w := want.(type) {
	case string:
		return v.Type() == cty.String && v.AsString() == w
	case bool:
		return v.Type() == cty.Bool && v.True() == w
	}
	return false
}

// CheckExampleSagas checks the example root's saga wiring: it deploys a
// state machine for exactly the given sagas (the generated templates under
// terraform/sagas), and the tool-gateway's extra policy grants exactly
// want (the Step Functions runner's and worker's declared actions).
func CheckExampleSagas(m *Module, sagas, want []string) []error {
	ev, err := NewEvaluator(m, nil)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if v, err := ev.Local("sagas"); err != nil {
		errs = append(errs, err)
	} else {
		var got []string
		for it := v.ElementIterator(); it.Next(); {
			_, s := it.Element()
			got = append(got, s.AsString())
		}
		slices.Sort(got)
		if !slices.Equal(got, sagas) {
			errs = append(errs, fmt.Errorf("example deploys sagas %v, want %v", got, sagas))
		}
	}
	var acts []string
	for _, st := range PolicyStatements(ev) {
		if st.Doc != "toolgateway_sagas" {
			continue
		}
		errs = append(errs, st.Errs...)
		acts = append(acts, st.Actions...)
		if contains(st.Resources, "*") {
			errs = append(errs, fmt.Errorf("%s: toolgateway saga statement %s must name its resources", st.Range, st.Sid))
		}
	}
	slices.Sort(acts)
	acts = slices.Compact(acts)
	if !slices.Equal(acts, want) {
		errs = append(errs, fmt.Errorf("tool-gateway saga policy grants %v, the Step Functions runner and worker declare %v", acts, want))
	}
	found := false
	for _, b := range m.Resources {
		attrs, _ := b.Body.JustAttributes()
		if b.Labels[0] == "aws_iam_role_policy" && refersTo(attrs["policy"], "data", "aws_iam_policy_document", "toolgateway_sagas") {
			found = refersTo(attrs["role"], "module", "service")
		}
	}
	if !found {
		errs = append(errs, fmt.Errorf("example: no aws_iam_role_policy gives the tool-gateway's task role data.aws_iam_policy_document.toolgateway_sagas"))
	}
	return errs
}

// SagaRuleName is the rule that routes calls of the saga tools to the
// tool-gateway's queue (the embedded runtime and `agentbus stack bootstrap
// --sagas-dir` create a rule of the same name and pattern).
const SagaRuleName = "toolgateway-sagas"

// SagaRulePattern is the event pattern of SagaRuleName for the saga names:
// ToolInvocationRequested whose toolname is one of them.
func SagaRulePattern(sagas []string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"detail-type": []string{events.TypeToolInvocationRequested},
		"detail":      map[string]any{events.ExtToolName: slices.Sorted(slices.Values(sagas))},
	})
	return b
}

// CheckExampleSagaRouting checks the saga rule of the example: with
// saga_definitions_dir set (the tool-gateway offers the sagas) the
// tool-gateway's subscriber deploys exactly one rule beyond the catalog,
// SagaRuleName, whose pattern names exactly sagas (the sagas the state
// machines are built from); without it, no rule beyond the catalog.
func CheckExampleSagaRouting(m *Module, sagas []string, catalog []rules.Rule) []error {
	inCatalog := map[string]bool{}
	for _, r := range catalog {
		inCatalog[r.Name] = true
	}
	extra := func(vars map[string]cty.Value) (map[string]DeployedRule, error) {
		deployed, err := SubscriberRulesWith(m, vars)
		if err != nil {
			return nil, err
		}
		for name := range deployed {
			if inCatalog[name] {
				delete(deployed, name)
			}
		}
		return deployed, nil
	}
	var errs []error
	off, err := extra(nil)
	if err != nil {
		return []error{err}
	}
	for name := range off {
		errs = append(errs, fmt.Errorf("without saga_definitions_dir the example deploys rule %s beyond the catalog", name))
	}
	on, err := extra(map[string]cty.Value{"saga_definitions_dir": cty.StringVal("/etc/agentbus/sagas")})
	if err != nil {
		return append(errs, err)
	}
	r, ok := on[SagaRuleName]
	switch {
	case !ok:
		errs = append(errs, fmt.Errorf("with saga_definitions_dir the example deploys no rule %s routing the saga tools to the tool-gateway", SagaRuleName))
	case r.Queue != "toolgateway":
		errs = append(errs, fmt.Errorf("rule %s targets queue %s, want toolgateway", SagaRuleName, r.Queue))
	case !sameJSON(r.EventPattern, SagaRulePattern(sagas)):
		errs = append(errs, fmt.Errorf("rule %s: pattern %s, want %s", SagaRuleName, r.EventPattern, SagaRulePattern(sagas)))
	}
	for name := range on {
		if name != SagaRuleName {
			errs = append(errs, fmt.Errorf("with saga_definitions_dir the example deploys rule %s beyond the catalog and %s", name, SagaRuleName))
		}
	}
	return errs
}
