package deploy

import (
	"bytes"
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// CheckFormat reports every file that `terraform fmt` would change. The
// layout is hclwrite.Format's, the formatter terraform fmt is built on; on
// top of it terraform fmt rewrites two legacy forms, which are reported too:
// an interpolation-only string ("${x}" instead of x) and a quoted or bare
// legacy type constraint in a variable ("string", list, map).
func CheckFormat(files []string) []error {
	var errs []error
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !bytes.Equal(hclwrite.Format(src), src) {
			errs = append(errs, fmt.Errorf("%s: not formatted as terraform fmt leaves it", path))
		}
		f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
		if diags.HasErrors() {
			errs = append(errs, fmt.Errorf("%s: %w", path, diags))
			continue
		}
		errs = append(errs, legacyForms(f.Body.(*hclsyntax.Body))...)
	}
	return errs
}

func legacyForms(body *hclsyntax.Body) []error {
	var errs []error
	_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		if w, ok := n.(*hclsyntax.TemplateWrapExpr); ok {
			errs = append(errs, fmt.Errorf("%s: interpolation-only expression: write the expression without \"${ }\"", w.SrcRange))
		}
		return nil
	})
	for _, b := range body.Blocks {
		if b.Type != "variable" {
			continue
		}
		a, ok := b.Body.Attributes["type"]
		if !ok {
			continue
		}
		switch e := a.Expr.(type) {
		case *hclsyntax.TemplateExpr:
			errs = append(errs, fmt.Errorf("%s: quoted type constraint", e.SrcRange))
		case *hclsyntax.ScopeTraversalExpr:
			if n := e.Traversal.RootName(); n == "list" || n == "map" {
				errs = append(errs, fmt.Errorf("%s: legacy type constraint %s: write %s(any)", e.SrcRange, n, n))
			}
		}
	}
	return errs
}
