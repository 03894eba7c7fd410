package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/bedrock"
	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/calculator"
	"github.com/agentbus/agentbus/tools/builtin/clock"
	"github.com/agentbus/agentbus/tools/builtin/httpget"
	"github.com/agentbus/agentbus/tools/builtin/memorysearch"
)

// builtinToolNames are the tools the catalog's toolgateway rule routes.
var builtinToolNames = []string{"calculator", "http_get", "clock", "memory_search"}

// registerBuiltins adds the built-in tools to reg. http_get fetches only the
// hosts in $AGENTBUS_HTTP_ALLOW_HOSTS (comma-separated; none by default) and
// reaches private addresses only in $AGENTBUS_HTTP_ALLOW_ADDRS (CIDRs).
func registerBuiltins(reg *tools.Registry, history memorysearch.HistorySearcher) error {
	hg := httpget.Config{AllowHosts: splitList(os.Getenv("AGENTBUS_HTTP_ALLOW_HOSTS"))}
	for _, s := range splitList(os.Getenv("AGENTBUS_HTTP_ALLOW_ADDRS")) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("AGENTBUS_HTTP_ALLOW_ADDRS: %w", err)
		}
		hg.AllowAddrs = append(hg.AllowAddrs, p)
	}
	get, err := httpget.New(hg)
	if err != nil {
		return err
	}
	ms, err := memorysearch.New(memorysearch.FromHistory(history))
	if err != nil {
		return err
	}
	for _, t := range []tools.Tool{calculator.Tool{}, &clock.Tool{}, get, ms} {
		if _, err := reg.Lookup(t.Spec().Name); err == nil {
			continue // a caller (a test) registered its own
		}
		if err := reg.Register(t); err != nil {
			return err
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// bedrockModel builds the Bedrock Converse model from the standard AWS
// configuration chain (region, credentials, AWS_ENDPOINT_URL).
func bedrockModel(ctx context.Context, modelID string) (model.Model, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("bedrock: AWS configuration: %w", err)
	}
	return bedrock.New(cfg, modelID), nil
}
