package deploy

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/agentbus/agentbus/events/rules"
)

// CheckDLQs reports every aws_sqs_queue of the module that has no DLQ: a
// queue passes when its redrive_policy names another aws_sqs_queue of the
// module, or when it is itself the DLQ named by another queue's
// redrive_policy.
func CheckDLQs(m *Module) []error {
	dlqOf := map[string]string{} // queue -> its DLQ
	for key, b := range m.Resources {
		if b.Labels[0] != "aws_sqs_queue" {
			continue
		}
		attrs, _ := b.Body.JustAttributes()
		a, ok := attrs["redrive_policy"]
		if !ok {
			continue
		}
		for _, t := range a.Expr.Variables() {
			if name, ok := attrAt(t, 1); ok && t.RootName() == "aws_sqs_queue" && "aws_sqs_queue."+name != key {
				dlqOf[key] = "aws_sqs_queue." + name
			}
		}
	}
	isDLQ := map[string]bool{}
	for _, d := range dlqOf {
		isDLQ[d] = true
	}
	var errs []error
	for key, b := range m.Resources {
		if b.Labels[0] == "aws_sqs_queue" && dlqOf[key] == "" && !isDLQ[key] {
			errs = append(errs, fmt.Errorf("%s: %s has no DLQ (no redrive_policy naming another queue of the module)", b.DefRange, key))
		}
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

// DeployedRule is a rule as a subscriber module call deploys it.
type DeployedRule struct {
	Queue                    string
	EventPattern             json.RawMessage
	MaxReceiveCount          int
	VisibilityTimeoutSeconds int
}

// SubscriberRules evaluates every call of the subscriber module in m (for
// each for_each element) and returns the rules it deploys by name.
func SubscriberRules(m *Module) (map[string]DeployedRule, error) {
	return SubscriberRulesWith(m, nil)
}

// SubscriberRulesWith is SubscriberRules with the given variable values
// (rules that exist only for some settings, such as the saga rule).
func SubscriberRulesWith(m *Module, vars map[string]cty.Value) (map[string]DeployedRule, error) {
	ev, err := NewEvaluator(m, vars)
	if err != nil {
		return nil, err
	}
	out := map[string]DeployedRule{}
	for name, call := range m.Calls {
		src, err := m.callSource(call)
		if err != nil {
			return nil, err
		}
		if filepath.Base(src) != "subscriber" {
			continue
		}
		attrs, _ := call.Body.JustAttributes()
		instances := []map[string]cty.Value{nil}
		if fe, ok := attrs["for_each"]; ok {
			coll, err := ev.Eval(fe.Expr, nil)
			if err != nil {
				return nil, fmt.Errorf("module %s for_each: %w", name, err)
			}
			if !coll.IsWhollyKnown() {
				return nil, fmt.Errorf("module %s: for_each is not known from the configuration", name)
			}
			instances = nil
			for it := coll.ElementIterator(); it.Next(); {
				k, v := it.Element()
				if coll.Type().IsSetType() {
					k = v
				}
				instances = append(instances, map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})})
			}
		}
		for _, extra := range instances {
			get := func(arg string, def cty.Value) (cty.Value, error) {
				a, ok := attrs[arg]
				if !ok {
					return def, nil
				}
				v, err := ev.Eval(a.Expr, extra)
				if err != nil {
					return cty.NilVal, fmt.Errorf("module %s %s: %w", name, arg, err)
				}
				if !v.IsWhollyKnown() {
					return cty.NilVal, fmt.Errorf("module %s %s: not known from the configuration", name, arg)
				}
				return v, nil
			}
			queue, err := get("name", cty.NilVal)
			if err != nil {
				return nil, err
			}
			rs, err := get("rules", cty.EmptyObjectVal)
			if err != nil {
				return nil, err
			}
			mrc, err := get("max_receive_count", cty.NumberIntVal(5))
			if err != nil {
				return nil, err
			}
			vts, err := get("visibility_timeout_seconds", cty.NumberIntVal(30))
			if err != nil {
				return nil, err
			}
			if queue == cty.NilVal || queue.Type() != cty.String {
				return nil, fmt.Errorf("module %s: name must be a string", name)
			}
			m, _ := mrc.AsBigFloat().Int64()
			v, _ := vts.AsBigFloat().Int64()
			for it := rs.ElementIterator(); it.Next(); {
				k, r := it.Element()
				pat := r.GetAttr("event_pattern")
				if pat.Type() != cty.String {
					return nil, fmt.Errorf("module %s rule %s: event_pattern must be a JSON string", name, k.AsString())
				}
				if _, dup := out[k.AsString()]; dup {
					return nil, fmt.Errorf("rule %s is deployed twice", k.AsString())
				}
				out[k.AsString()] = DeployedRule{
					Queue: queue.AsString(), EventPattern: json.RawMessage(pat.AsString()),
					MaxReceiveCount: int(m), VisibilityTimeoutSeconds: int(v),
				}
			}
		}
	}
	return out, nil
}

// CheckCatalogDeployed checks that the module (the example root) deploys
// exactly the catalog: every rule, with its pattern, to its queue, with the
// queue's settings, and nothing else.
func CheckCatalogDeployed(m *Module, catalog []rules.Rule) []error {
	deployed, err := SubscriberRules(m)
	if err != nil {
		return []error{err}
	}
	specs, err := rules.Queues(catalog)
	if err != nil {
		return []error{err}
	}
	spec := map[string]rules.QueueSpec{}
	for _, s := range specs {
		spec[s.Name] = s
	}
	var errs []error
	for _, r := range catalog {
		d, ok := deployed[r.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("catalog rule %s is not deployed by %s", r.Name, m.Dir))
			continue
		}
		delete(deployed, r.Name)
		if d.Queue != r.Target.Queue {
			errs = append(errs, fmt.Errorf("rule %s: deployed to queue %s, catalog says %s", r.Name, d.Queue, r.Target.Queue))
		}
		if !sameJSON(d.EventPattern, r.EventPattern) {
			errs = append(errs, fmt.Errorf("rule %s: deployed pattern %s differs from the catalog's %s", r.Name, d.EventPattern, r.EventPattern))
		}
		s := spec[r.Target.Queue]
		if d.MaxReceiveCount != s.MaxReceiveCount || d.VisibilityTimeoutSeconds != s.VisibilityTimeoutSeconds {
			errs = append(errs, fmt.Errorf("rule %s: queue %s deployed with maxReceiveCount %d, visibility %ds; catalog says %d, %ds",
				r.Name, d.Queue, d.MaxReceiveCount, d.VisibilityTimeoutSeconds, s.MaxReceiveCount, s.VisibilityTimeoutSeconds))
		}
	}
	for name := range deployed {
		errs = append(errs, fmt.Errorf("rule %s is deployed but not in the catalog: routing must come from events/rules", name))
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errs
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// serviceTestVars are known stand-ins for the service module's ARN inputs,
// so its policy documents can be evaluated without AWS.
func serviceTestVars(service string) map[string]cty.Value {
	s := cty.StringVal
	return map[string]cty.Value{
		"name":                  s(service),
		"cluster_arn":           s("arn:aws:ecs:us-east-1:123456789012:cluster/agentbus"),
		"image":                 s("agentbus:test"),
		"subnet_ids":            cty.ListVal([]cty.Value{s("subnet-0a")}),
		"security_group_ids":    cty.ListVal([]cty.Value{s("sg-0a")}),
		"bus_name":              s("agentbus"),
		"bus_arn":               s("arn:aws:events:us-east-1:123456789012:event-bus/agentbus"),
		"queue_name":            s("agentbus-" + service),
		"queue_url":             s("https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-" + service),
		"queue_arn":             s("arn:aws:sqs:us-east-1:123456789012:agentbus-" + service),
		"dlq_url":               s("https://sqs.us-east-1.amazonaws.com/123456789012/agentbus-" + service + "-dlq"),
		"dlq_arn":               s("arn:aws:sqs:us-east-1:123456789012:agentbus-" + service + "-dlq"),
		"table_name":            s("agentbus"),
		"table_arn":             s("arn:aws:dynamodb:us-east-1:123456789012:table/agentbus"),
		"bucket_name":           s("agentbus-blobs"),
		"bucket_arn":            s("arn:aws:s3:::agentbus-blobs"),
		"redis_addr":            s("redis.example:6379"),
		"redis_auth_secret_arn": s("arn:aws:secretsmanager:us-east-1:123456789012:secret:agentbus/redis-auth-token"),
		"bedrock_model_arns":    cty.ListVal([]cty.Value{s("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude")}),
	}
}

// CheckServiceRole checks the service module's task role for one service:
// its only policy is data.aws_iam_policy_document.task, the task definition
// runs with it, and the actions it grants are exactly want (the union of the
// service's adapters' declared actions), each on named resources.
func CheckServiceRole(m *Module, service string, want []string) []error {
	ev, err := NewEvaluator(m, serviceTestVars(service))
	if err != nil {
		return []error{err}
	}
	var errs []error
	var got []string
	for _, st := range PolicyStatements(ev) {
		if st.Doc != "task" {
			continue
		}
		errs = append(errs, st.Errs...)
		got = append(got, st.Actions...)
		if st.Resources == nil || len(st.Resources) == 0 || contains(st.Resources, "*") {
			errs = append(errs, fmt.Errorf("%s: task statement %s must name its resources (got %v)", st.Range, st.Sid, st.Resources))
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if !slices.Equal(got, want) {
		errs = append(errs, fmt.Errorf("service %s: task role grants %v, its adapters declare %v", service, got, want))
	}
	// The role has exactly one policy, the task document, and the task runs
	// with this role.
	policies := 0
	for key, b := range m.Resources {
		attrs, _ := b.Body.JustAttributes()
		switch b.Labels[0] {
		case "aws_iam_role_policy", "aws_iam_role_policy_attachment", "aws_iam_policy_attachment":
			if refersTo(attrs["role"], "aws_iam_role", "task") || refersTo(attrs["roles"], "aws_iam_role", "task") {
				policies++
				if !refersTo(attrs["policy"], "data", "aws_iam_policy_document", "task") {
					errs = append(errs, fmt.Errorf("%s: %s gives the task role a policy other than data.aws_iam_policy_document.task", b.DefRange, key))
				}
			}
		case "aws_ecs_task_definition":
			if !refersTo(attrs["task_role_arn"], "aws_iam_role", "task") {
				errs = append(errs, fmt.Errorf("%s: %s does not run with aws_iam_role.task", b.DefRange, key))
			}
		}
	}
	if policies != 1 {
		errs = append(errs, fmt.Errorf("service module: the task role has %d policies, want exactly 1", policies))
	}
	return errs
}

// refersTo reports whether the attribute's expression refers to the object
// whose traversal starts with the given names.
func refersTo(a *hcl.Attribute, names ...string) bool {
	if a == nil {
		return false
	}
	for _, t := range a.Expr.Variables() {
		ok := true
		for i, n := range names {
			if got, isAttr := attrAt(t, i); !isAttr || got != n {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// EnvironmentContract evaluates the service module's container environment
// and secrets names for one service, for comparison with the contract list.
func EnvironmentContract(m *Module, service string) (env, secrets []string, err error) {
	ev, err := NewEvaluator(m, serviceTestVars(service))
	if err != nil {
		return nil, nil, err
	}
	names := func(local string) ([]string, error) {
		v, err := ev.Local(local)
		if err != nil {
			return nil, err
		}
		if !v.CanIterateElements() {
			return nil, fmt.Errorf("local %s is not a map", local)
		}
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			k, _ := it.Element()
			out = append(out, k.AsString())
		}
		sort.Strings(out)
		return out, nil
	}
	if env, err = names("environment"); err != nil {
		return nil, nil, err
	}
	secrets, err = names("secrets")
	return env, secrets, err
}
