package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Evaluator evaluates a module's locals and arguments the way Terraform
// would at plan time, for the parts that do not depend on provider data:
// variables take the given values (else their defaults, else unknown),
// resources, data sources and module outputs are unknown. It implements the
// Terraform functions our modules use in locals (an unknown function is an
// evaluation error, so a new one cannot slip through unchecked).
type Evaluator struct {
	m      *Module
	vars   map[string]cty.Value
	locals map[string]cty.Value
	busy   map[string]bool
}

// NewEvaluator prepares m for evaluation with the given variable values.
func NewEvaluator(m *Module, vars map[string]cty.Value) (*Evaluator, error) {
	e := &Evaluator{m: m, vars: map[string]cty.Value{}, locals: map[string]cty.Value{}, busy: map[string]bool{}}
	for name, v := range m.Variables {
		switch {
		case vars[name] != cty.NilVal:
			e.vars[name] = vars[name]
		case v.Default != nil:
			val, diags := v.Default.Value(nil)
			if diags.HasErrors() {
				return nil, fmt.Errorf("variable %s default: %w", name, diags)
			}
			e.vars[name] = val
		default:
			e.vars[name] = cty.DynamicVal
		}
	}
	for name := range vars {
		if m.Variables[name] == nil {
			return nil, fmt.Errorf("no variable %q in %s", name, m.Dir)
		}
	}
	return e, nil
}

// Local evaluates local.name.
func (e *Evaluator) Local(name string) (cty.Value, error) {
	if v, ok := e.locals[name]; ok {
		return v, nil
	}
	expr, ok := e.m.Locals[name]
	if !ok {
		return cty.NilVal, fmt.Errorf("no local %q", name)
	}
	if e.busy[name] {
		return cty.NilVal, fmt.Errorf("local %q refers to itself", name)
	}
	e.busy[name] = true
	defer delete(e.busy, name)
	v, err := e.Eval(expr, nil)
	if err != nil {
		return cty.NilVal, fmt.Errorf("local %s: %w", name, err)
	}
	e.locals[name] = v
	return v, nil
}

// Eval evaluates expr; extra adds variables such as "each".
func (e *Evaluator) Eval(expr hcl.Expression, extra map[string]cty.Value) (cty.Value, error) {
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}, Functions: e.functions()}
	locals := map[string]cty.Value{}
	for _, t := range expr.Variables() {
		switch t.RootName() {
		case "local":
			n, _ := attrAt(t, 1)
			v, err := e.Local(n)
			if err != nil {
				return cty.NilVal, err
			}
			locals[n] = v
		case "var", "path", "each", "count":
		default:
			ctx.Variables[t.RootName()] = cty.DynamicVal // resources, data, modules
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	ctx.Variables["var"] = cty.ObjectVal(e.vars)
	ctx.Variables["path"] = cty.ObjectVal(map[string]cty.Value{
		"module": cty.StringVal("."), "root": cty.StringVal("."), "cwd": cty.StringVal("."),
	})
	for k, v := range extra {
		ctx.Variables[k] = v
	}
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return v, nil
}

func (e *Evaluator) functions() map[string]function.Function {
	return map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "alltrue": allTrueFunc(true), "anytrue": allTrueFunc(false),
		"can": tryfunc.CanFunc, "coalesce": stdlib.CoalesceFunc, "concat": stdlib.ConcatFunc,
		"contains": stdlib.ContainsFunc, "distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc,
		"endswith": suffixFunc(false), "file": e.fileFunc(), "fileset": e.filesetFunc(),
		"flatten": stdlib.FlattenFunc, "format": stdlib.FormatFunc, "join": stdlib.JoinFunc,
		"jsondecode": stdlib.JSONDecodeFunc, "jsonencode": stdlib.JSONEncodeFunc, "keys": stdlib.KeysFunc,
		"length": stdlib.LengthFunc, "lookup": stdlib.LookupFunc, "lower": stdlib.LowerFunc,
		"max": stdlib.MaxFunc, "merge": stdlib.MergeFunc, "min": stdlib.MinFunc, "regex": stdlib.RegexFunc,
		"replace": stdlib.ReplaceFunc, "slice": stdlib.SliceFunc, "sort": stdlib.SortFunc,
		"split": stdlib.SplitFunc, "startswith": suffixFunc(true), "strcontains": strContainsFunc,
		"substr": stdlib.SubstrFunc, "tolist": convFunc(cty.List(cty.DynamicPseudoType)),
		"tomap": convFunc(cty.Map(cty.DynamicPseudoType)), "toset": convFunc(cty.Set(cty.DynamicPseudoType)),
		"tonumber": convFunc(cty.Number), "tostring": convFunc(cty.String), "try": tryfunc.TryFunc,
		"upper": stdlib.UpperFunc, "values": stdlib.ValuesFunc,
	}
}

func convFunc(want cty.Type) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true}},
		Type: func(args []cty.Value) (cty.Type, error) {
			if !args[0].IsKnown() && args[0].Type() == cty.DynamicPseudoType {
				return cty.DynamicPseudoType, nil
			}
			v, err := convert.Convert(args[0], want)
			if err != nil {
				return cty.NilType, err
			}
			return v.Type(), nil
		},
		Impl: func(args []cty.Value, ret cty.Type) (cty.Value, error) { return convert.Convert(args[0], ret) },
	})
}

func allTrueFunc(all bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for it := args[0].ElementIterator(); it.Next(); {
				_, v := it.Element()
				if !v.IsKnown() {
					return cty.UnknownVal(cty.Bool), nil
				}
				if b := v.True(); b != all {
					return cty.BoolVal(b), nil
				}
			}
			return cty.BoolVal(all), nil
		},
	})
}

func suffixFunc(prefix bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "affix", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, a := args[0].AsString(), args[1].AsString()
			if prefix {
				return cty.BoolVal(strings.HasPrefix(s, a)), nil
			}
			return cty.BoolVal(strings.HasSuffix(s, a)), nil
		},
	})
}

var strContainsFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "sub", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.Contains(args[0].AsString(), args[1].AsString())), nil
	},
})

// fileFunc reads a file; relative paths are relative to the module folder,
// as Terraform's are when the root module is the working directory.
func (e *Evaluator) fileFunc() function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := os.ReadFile(e.abs(args[0].AsString()))
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// filesetFunc supports the patterns our modules use: a single folder level
// with * and ? wildcards (filepath.Match), as Terraform's fileset does.
func (e *Evaluator) filesetFunc() function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "pattern", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Set(cty.String)),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			dir, pattern := e.abs(args[0].AsString()), args[1].AsString()
			if strings.Contains(pattern, "**") || strings.Contains(pattern, "/") {
				return cty.NilVal, fmt.Errorf("fileset pattern %q: only one folder level is supported here", pattern)
			}
			matches, err := filepath.Glob(filepath.Join(dir, pattern))
			if err != nil {
				return cty.NilVal, err
			}
			sort.Strings(matches)
			if len(matches) == 0 {
				return cty.SetValEmpty(cty.String), nil
			}
			vals := make([]cty.Value, len(matches))
			for i, m := range matches {
				vals[i] = cty.StringVal(filepath.Base(m))
			}
			return cty.SetVal(vals), nil
		},
	})
}

func (e *Evaluator) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.m.Dir, p)
}
