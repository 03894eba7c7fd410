package model

// EstimateTokens estimates the tokens of a text: one token per started four
// bytes of UTF-8. It is an estimate, not any provider's tokenizer (real
// tokenizers are model-specific and not available offline); it is roughly
// right for English prose and JSON and it is deterministic, which is what the
// budget checks and the scripted model need.
func EstimateTokens(s string) int {
	return (len(s) + 3) / 4
}

// Fixed overheads of EstimateInputTokens, in tokens: a message's role and
// framing, a content block's framing, a tool spec's framing. Chosen to be in
// the range providers charge; they only matter for being deterministic.
const (
	messageOverhead = 4
	blockOverhead   = 2
	toolOverhead    = 8
)

// EstimateInputTokens estimates the input tokens req costs: system prompt,
// every content block (text, tool-use names and inputs, tool-result content)
// and every tool spec (name, description, schema), plus fixed framing per
// message, block and tool. It is an ESTIMATE used to refuse a call whose input
// alone would exceed a token budget before making it; the provider's reported
// Usage.InputTokens is authoritative after the call. The scripted model
// reports exactly this number as its input usage, so budgets behave
// deterministically offline.
func EstimateInputTokens(req Request) int {
	n := EstimateTokens(req.System)
	for _, t := range req.Tools {
		n += toolOverhead + EstimateTokens(t.Name) + EstimateTokens(t.Description) + EstimateTokens(string(t.InputSchema))
	}
	for _, m := range req.Messages {
		n += messageOverhead
		for _, b := range m.Content {
			n += blockOverhead + EstimateBlockTokens(b)
		}
	}
	return n
}

// EstimateBlockTokens estimates the tokens of one content block, without
// framing.
func EstimateBlockTokens(b Block) int {
	switch {
	case b.ToolUse != nil:
		return EstimateTokens(b.ToolUse.ID) + EstimateTokens(b.ToolUse.Name) + EstimateTokens(string(b.ToolUse.Input))
	case b.ToolResult != nil:
		return EstimateTokens(b.ToolResult.ToolUseID) + EstimateTokens(string(b.ToolResult.Content))
	default:
		return EstimateTokens(b.Text)
	}
}

// EstimateOutputTokens estimates the output tokens of a response's content
// (its text and tool uses, without framing). The scripted model reports this
// as its output usage.
func EstimateOutputTokens(r Response) int {
	n := EstimateTokens(r.Text)
	for _, u := range r.ToolUses {
		n += EstimateBlockTokens(Block{ToolUse: &u})
	}
	return n
}
