package dynamodb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/agentbus/agentbus/platform/state"
)

var _ state.ToolSpecs = (*Store)(nil)

// Plug-in tool specs live in one partition: a handful of items, read whole
// by every planner and executor at start and on refresh.
const (
	pkToolSpecs   = "TOOLSPECS"
	attrPlugin    = "plugin"
	attrToolSpec  = "spec"
	attrUpdatedMs = "updatedMs"
)

func toolSpecSK(name string) string { return "TOOL#" + name }

// PutToolSpecs implements state.ToolSpecs. The puts are one transaction
// (at most 100 specs per call, DynamoDB's limit).
func (st *Store) PutToolSpecs(ctx context.Context, specs ...state.ToolSpec) error {
	if len(specs) == 0 {
		return nil
	}
	if len(specs) > 100 {
		return fmt.Errorf("%w: %d tool specs in one call (at most 100)", state.ErrInvalid, len(specs))
	}
	now := st.now().UnixMilli()
	var items []types.TransactWriteItem
	for _, sp := range specs {
		if err := state.ValidateToolSpec(sp); err != nil {
			return err
		}
		item := key(pkToolSpecs, toolSpecSK(sp.Name))
		item[attrPlugin] = s(sp.Plugin)
		item[attrToolSpec] = s(string(sp.Spec))
		item[attrUpdatedMs] = n(now)
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: &st.table, Item: item}})
	}
	if _, err := st.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items}); err != nil {
		return fmt.Errorf("dynamodb put tool specs: %w", err)
	}
	return nil
}

// ListToolSpecs implements state.ToolSpecs.
func (st *Store) ListToolSpecs(ctx context.Context) ([]state.ToolSpec, error) {
	items, err := st.queryAll(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pkToolSpecs)},
	}, 0)
	if err != nil {
		return nil, err
	}
	out := make([]state.ToolSpec, 0, len(items))
	for _, it := range items {
		out = append(out, state.ToolSpec{
			Name:      strings.TrimPrefix(getS(it, attrSK), "TOOL#"),
			Plugin:    getS(it, attrPlugin),
			Spec:      []byte(getS(it, attrToolSpec)),
			UpdatedAt: time.UnixMilli(getN(it, attrUpdatedMs)).UTC(),
		})
	}
	return out, nil // the sort key orders them by name
}

// DeleteToolSpec implements state.ToolSpecs.
func (st *Store) DeleteToolSpec(ctx context.Context, name string) error {
	_, err := st.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{
		st.table: {{DeleteRequest: &types.DeleteRequest{Key: key(pkToolSpecs, toolSpecSK(name))}}},
	}})
	if err != nil {
		return fmt.Errorf("dynamodb delete tool spec %s: %w", name, err)
	}
	return nil
}
