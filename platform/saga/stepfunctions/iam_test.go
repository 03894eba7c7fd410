package stepfunctions

import (
	"reflect"
	"slices"
	"testing"

	busqs "github.com/agentbus/agentbus/platform/bus/sqs"
)

// actionsOf maps the methods of an API interface to IAM actions of service.
func actionsOf(service string, apis ...reflect.Type) []string {
	var out []string
	for _, api := range apis {
		for i := range api.NumMethod() {
			out = append(out, service+":"+api.Method(i).Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestIAMActionsCoverCalls keeps the IAM lists (which Terraform turns into
// least-privilege roles) in step with the calls the interfaces declare.
func TestIAMActionsCoverCalls(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"RunnerIAMActions", RunnerIAMActions, actionsOf("states", reflect.TypeFor[API]())},
		{"ProvisionIAMActions", ProvisionIAMActions, append(append(actionsOf("states", reflect.TypeFor[ProvisionAPI]()), actionsOf("sqs", reflect.TypeFor[busqs.ProvisionAPI]())...), "iam:PassRole")},
		{"WorkerIAMActions", WorkerIAMActions, append(actionsOf("states", reflect.TypeFor[TaskAPI]()), actionsOf("sqs", reflect.TypeFor[QueueAPI]())...)},
	} {
		got := slices.Sorted(slices.Values(tc.got))
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", tc.name, got, want)
		}
	}
}
