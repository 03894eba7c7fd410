package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// EnsureTable creates the table if it does not exist (on-demand capacity,
// string keys pk and sk, no GSI), waits until it is ACTIVE and enables TTL
// on expiresAt. It is idempotent: the stack bootstrap runs it on every
// start. Terraform creates the same table in AWS (docs/state.md).
func (st *Store) EnsureTable(ctx context.Context) error {
	_, err := st.api.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: &st.table,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("create table %s: %w", st.table, err)
	}
	if err := st.waitActive(ctx); err != nil {
		return err
	}
	ttl, err := st.api.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: &st.table})
	if err != nil {
		return fmt.Errorf("describe ttl of %s: %w", st.table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && aws.ToString(d.AttributeName) == attrExpiresAt &&
		(d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = st.api.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: &st.table,
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpiresAt), Enabled: aws.Bool(true),
		},
	})
	// Two bootstraps racing: the loser is told TTL is already enabled.
	if err != nil && !strings.Contains(err.Error(), "already enabled") {
		return fmt.Errorf("enable ttl on %s: %w", st.table, err)
	}
	return nil
}

func (st *Store) waitActive(ctx context.Context) error {
	for i := 0; ; i++ {
		out, err := st.api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &st.table})
		if err != nil {
			return fmt.Errorf("describe table %s: %w", st.table, err)
		}
		if out.Table != nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		if i >= 120 {
			return fmt.Errorf("table %s not active after 60s (status %s)", st.table, out.Table.TableStatus)
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
