package sqlite

import (
	"context"
	"fmt"

	"github.com/agentbus/agentbus/platform/state"
)

var _ state.ToolSpecs = (*Store)(nil)

// toolSpecsSchema is created at open with the main schema.
const toolSpecsSchema = `
CREATE TABLE IF NOT EXISTS tool_specs (
  name TEXT PRIMARY KEY,
  plugin TEXT NOT NULL,
  spec BLOB NOT NULL,
  updated_ms INTEGER NOT NULL
) STRICT;
`

// PutToolSpecs implements state.ToolSpecs.
func (s *Store) PutToolSpecs(ctx context.Context, specs ...state.ToolSpec) error {
	for _, sp := range specs {
		if err := state.ValidateToolSpec(sp); err != nil {
			return err
		}
	}
	now := s.nowMs()
	return s.tx(ctx, func(tx *wtx) error {
		for _, sp := range specs {
			// s.exec, not tx.ExecContext: an interrupted statement would roll
			// back the group-committed transaction other callers share.
			if _, err := s.exec(ctx, tx, `INSERT INTO tool_specs(name, plugin, spec, updated_ms) VALUES (?, ?, ?, ?)
ON CONFLICT(name) DO UPDATE SET plugin = excluded.plugin, spec = excluded.spec, updated_ms = excluded.updated_ms`,
				sp.Name, sp.Plugin, sp.Spec, now); err != nil {
				return fmt.Errorf("sqlite: put tool spec %s: %w", sp.Name, err)
			}
		}
		return nil
	})
}

// ListToolSpecs implements state.ToolSpecs.
func (s *Store) ListToolSpecs(ctx context.Context) ([]state.ToolSpec, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, plugin, spec, updated_ms FROM tool_specs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tool specs: %w", err)
	}
	defer rows.Close()
	var out []state.ToolSpec
	for rows.Next() {
		var (
			sp      state.ToolSpec
			updated int64
		)
		if err := rows.Scan(&sp.Name, &sp.Plugin, &sp.Spec, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: list tool specs: %w", err)
		}
		sp.UpdatedAt = ms(updated)
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list tool specs: %w", err)
	}
	return out, nil
}

// DeleteToolSpec implements state.ToolSpecs.
func (s *Store) DeleteToolSpec(ctx context.Context, name string) error {
	return s.tx(ctx, func(tx *wtx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM tool_specs WHERE name = ?`, name); err != nil {
			return fmt.Errorf("sqlite: delete tool spec %s: %w", name, err)
		}
		return nil
	})
}
