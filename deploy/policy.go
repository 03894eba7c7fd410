package deploy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// StarResourceActions are the only actions an Allow statement may grant on
// Resource "*", each with the reason. Everything else names its resources.
var StarResourceActions = map[string]string{
	// ECR login has no resource-level permissions; the image pull itself is
	// scoped to the repository.
	"ecr:GetAuthorizationToken": "ECR login accepts only Resource \"*\"",
	// Vended log delivery (Step Functions execution logs, EventBridge bus
	// logs) is configured through these CloudWatch Logs actions, which AWS
	// documents as requiring Resource "*".
	"logs:CreateLogDelivery":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:GetLogDelivery":           "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:UpdateLogDelivery":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:DeleteLogDelivery":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:ListLogDeliveries":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:PutResourcePolicy":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:DescribeResourcePolicies": "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	"logs:DescribeLogGroups":        "CloudWatch Logs delivery for Step Functions/EventBridge logging requires \"*\"",
	// X-Ray tracing of the saga state machines: these X-Ray actions have
	// no resource-level permissions.
	"xray:PutTraceSegments":    "X-Ray trace submission (Step Functions tracing) has no resource-level permissions",
	"xray:PutTelemetryRecords": "X-Ray trace submission (Step Functions tracing) has no resource-level permissions",
	"xray:GetSamplingRules":    "X-Ray sampling (Step Functions tracing) has no resource-level permissions",
	"xray:GetSamplingTargets":  "X-Ray sampling (Step Functions tracing) has no resource-level permissions",
}

// Statement is one evaluated statement of an aws_iam_policy_document.
// Actions or Resources are nil when they are not known from the
// configuration alone (e.g. a resource ARN).
type Statement struct {
	Doc       string // data source name
	Sid       string
	Effect    string
	Actions   []string
	Resources []string
	Range     hcl.Range
	Errs      []error
}

// PolicyStatements evaluates every statement (static and dynamic) of every
// aws_iam_policy_document data source of the evaluator's module.
func PolicyStatements(ev *Evaluator) []Statement {
	var out []Statement
	for _, body := range sortedBodies(ev.m) {
		for _, b := range body.Blocks {
			if b.Type != "data" || b.Labels[0] != "aws_iam_policy_document" {
				continue
			}
			doc := b.Labels[1]
			for _, st := range b.Body.Blocks {
				switch {
				case st.Type == "statement":
					out = append(out, evalStatement(ev, doc, st.Body, nil))
				case st.Type == "dynamic" && st.Labels[0] == "statement":
					out = append(out, dynamicStatements(ev, doc, st)...)
				}
			}
		}
	}
	return out
}

func dynamicStatements(ev *Evaluator, doc string, dyn *hclsyntax.Block) []Statement {
	bad := func(err error) []Statement {
		return []Statement{{Doc: doc, Range: dyn.DefRange(), Errs: []error{err}}}
	}
	fe, ok := dyn.Body.Attributes["for_each"]
	if !ok {
		return bad(fmt.Errorf("%s: dynamic statement without for_each", dyn.DefRange()))
	}
	coll, err := ev.Eval(fe.Expr, nil)
	if err != nil {
		return bad(fmt.Errorf("%s: for_each: %w", fe.SrcRange, err))
	}
	if !coll.IsWhollyKnown() || coll.IsNull() {
		return bad(fmt.Errorf("%s: for_each of a dynamic statement must be known from the configuration", fe.SrcRange))
	}
	iter := dyn.Labels[0]
	if a, ok := dyn.Body.Attributes["iterator"]; ok {
		if t, d := hcl.AbsTraversalForExpr(a.Expr); !d.HasErrors() {
			iter = t.RootName()
		}
	}
	var content *hclsyntax.Body
	for _, c := range dyn.Body.Blocks {
		if c.Type == "content" {
			content = c.Body
		}
	}
	if content == nil {
		return bad(fmt.Errorf("%s: dynamic statement without content", dyn.DefRange()))
	}
	var out []Statement
	for it := coll.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if coll.Type().IsSetType() {
			k = v // a set's iterator key is the element itself, as in Terraform
		}
		extra := map[string]cty.Value{iter: cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
		out = append(out, evalStatement(ev, doc, content, extra))
	}
	return out
}

func evalStatement(ev *Evaluator, doc string, body *hclsyntax.Body, extra map[string]cty.Value) Statement {
	st := Statement{Doc: doc, Effect: "Allow", Range: body.SrcRange}
	str := func(name string) (string, bool) {
		a, ok := body.Attributes[name]
		if !ok {
			return "", false
		}
		v, err := ev.Eval(a.Expr, extra)
		if err != nil || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			st.Errs = append(st.Errs, fmt.Errorf("%s: %s must be a known string", a.SrcRange, name))
			return "", false
		}
		return v.AsString(), true
	}
	list := func(name string) ([]string, bool) {
		a, ok := body.Attributes[name]
		if !ok {
			return nil, false
		}
		v, err := ev.Eval(a.Expr, extra)
		if err != nil {
			st.Errs = append(st.Errs, fmt.Errorf("%s: %s: %w", a.SrcRange, name, err))
			return nil, true
		}
		if !v.IsWhollyKnown() || v.IsNull() || !v.CanIterateElements() {
			return nil, true
		}
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String {
				st.Errs = append(st.Errs, fmt.Errorf("%s: %s must be strings", a.SrcRange, name))
				return nil, true
			}
			out = append(out, e.AsString())
		}
		if out == nil {
			out = []string{}
		}
		return out, true
	}
	st.Sid, _ = str("sid")
	if e, ok := str("effect"); ok {
		st.Effect = e
	}
	for _, forbidden := range []string{"not_actions", "not_resources"} {
		if a, ok := body.Attributes[forbidden]; ok {
			st.Errs = append(st.Errs, fmt.Errorf("%s: %s grants everything else: name what is allowed", a.SrcRange, forbidden))
		}
	}
	acts, ok := list("actions")
	if !ok {
		st.Errs = append(st.Errs, fmt.Errorf("%s: statement without actions", body.SrcRange))
	} else if acts == nil {
		st.Errs = append(st.Errs, fmt.Errorf("%s: actions must be known from the configuration (literal or the generated adapter lists)", body.Attributes["actions"].SrcRange))
	}
	st.Actions = acts
	st.Resources, _ = list("resources")
	return st
}

// CheckIAM checks every policy document of the evaluator's module: actions
// are named (no "*" anywhere in an action), Resource "*" only with an
// allow-listed action (StarResourceActions), no not_actions/not_resources,
// and every policy argument of a resource comes from an
// aws_iam_policy_document (so no inline JSON policy escapes these checks).
func CheckIAM(ev *Evaluator) []error {
	var errs []error
	for _, st := range PolicyStatements(ev) {
		errs = append(errs, st.Errs...)
		for _, a := range st.Actions {
			if strings.Contains(a, "*") {
				errs = append(errs, fmt.Errorf("%s: data.aws_iam_policy_document.%s: action %q: name the actions, not a wildcard", st.Range, st.Doc, a))
			}
		}
		if st.Effect == "Allow" && contains(st.Resources, "*") {
			for _, a := range st.Actions {
				if _, ok := StarResourceActions[a]; !ok {
					errs = append(errs, fmt.Errorf("%s: data.aws_iam_policy_document.%s: %s on Resource \"*\" is not in the allow-list", st.Range, st.Doc, a))
				}
			}
		}
	}
	for _, body := range sortedBodies(ev.m) {
		for _, b := range body.Blocks {
			if b.Type != "resource" {
				continue
			}
			for name, a := range b.Body.Attributes {
				if name != "policy" && name != "assume_role_policy" && name != "policy_document" {
					continue
				}
				if !isPolicyDocRef(a.Expr) {
					errs = append(errs, fmt.Errorf("%s: %s.%s: %s must be data.aws_iam_policy_document.<name>.json", a.SrcRange, b.Labels[0], b.Labels[1], name))
				}
			}
			if b.Labels[0] == "aws_iam_role" {
				for _, forbidden := range []string{"managed_policy_arns", "inline_policy"} {
					if _, ok := b.Body.Attributes[forbidden]; ok {
						errs = append(errs, fmt.Errorf("%s: aws_iam_role.%s: %s bypasses the policy documents", b.DefRange(), b.Labels[1], forbidden))
					}
				}
			}
			if b.Labels[0] == "aws_iam_role_policy_attachment" || b.Labels[0] == "aws_iam_policy_attachment" {
				errs = append(errs, fmt.Errorf("%s: %s attaches a policy not written here (managed policies may grant \"*\")", b.DefRange(), b.Labels[0]))
			}
		}
	}
	return errs
}

func isPolicyDocRef(e hcl.Expression) bool {
	t, d := hcl.AbsTraversalForExpr(e)
	if d.HasErrors() || len(t) != 4 || t.RootName() != "data" {
		return false
	}
	typ, _ := attrAt(t, 1)
	attr, _ := attrAt(t, 3)
	return typ == "aws_iam_policy_document" && attr == "json"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sortedBodies(m *Module) []*hclsyntax.Body {
	files := make([]string, 0, len(m.Native))
	for f := range m.Native {
		files = append(files, f)
	}
	sort.Strings(files)
	out := make([]*hclsyntax.Body, len(files))
	for i, f := range files {
		out[i] = m.Native[f]
	}
	return out
}
