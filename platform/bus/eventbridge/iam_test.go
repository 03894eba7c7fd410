package eventbridge

import (
	"reflect"
	"slices"
	"testing"
)

func actionsOf(api reflect.Type) []string {
	var out []string
	for i := range api.NumMethod() {
		out = append(out, "events:"+api.Method(i).Name)
	}
	slices.Sort(out)
	return out
}

// TestIAMActionsCoverCalls keeps the IAM lists (which Terraform turns into
// least-privilege roles) in step with the calls the interfaces declare.
func TestIAMActionsCoverCalls(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		list []string
		api  reflect.Type
	}{
		"IAMActions":          {IAMActions, reflect.TypeFor[PutEventsAPI]()},
		"BootstrapIAMActions": {BootstrapIAMActions, reflect.TypeFor[ProvisionAPI]()},
	} {
		if got, want := slices.Sorted(slices.Values(tc.list)), actionsOf(tc.api); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
