package sqs

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// actionsOf maps the methods of an API interface to IAM actions: a batch
// call is authorized by its single-message action.
func actionsOf(api reflect.Type) []string {
	var out []string
	for i := range api.NumMethod() {
		out = append(out, "sqs:"+strings.TrimSuffix(api.Method(i).Name, "Batch"))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestIAMActionsCoverCalls keeps the IAM lists (which Terraform turns into
// least-privilege roles) in step with the calls the interfaces declare.
func TestIAMActionsCoverCalls(t *testing.T) {
	t.Parallel()
	// At run time a service also resolves its queue with Lookup.
	run := append(actionsOf(reflect.TypeFor[API]()), "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
	slices.Sort(run)
	got := slices.Sorted(slices.Values(IAMActions))
	if !slices.Equal(got, run) {
		t.Errorf("IAMActions = %v, want %v", got, run)
	}
	boot := actionsOf(reflect.TypeFor[ProvisionAPI]())
	if got := slices.Sorted(slices.Values(BootstrapIAMActions)); !slices.Equal(got, boot) {
		t.Errorf("BootstrapIAMActions = %v, want %v", got, boot)
	}
}
