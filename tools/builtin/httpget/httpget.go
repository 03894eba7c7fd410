// Package httpget is the built-in `http_get` tool: an HTTP GET to an
// allow-listed host, with the dialed address checked against private,
// loopback, link-local, unspecified and multicast ranges, a size limit, a time
// limit and re-checked redirects.
package httpget

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/agentbus/agentbus/tools"
)

// Name is the tool's name.
const Name = "http_get"

// Defaults for a zero Config.
const (
	DefaultMaxBytes     = 128 << 10
	DefaultTimeout      = 10 * time.Second
	DefaultMaxRedirects = 5
)

// Errors callers (and tests) check with errors.Is.
var (
	// ErrHostNotAllowed: the URL's (or a redirect's) host is not on the
	// allow list.
	ErrHostNotAllowed = errors.New("host not allowed")
	// ErrAddressBlocked: the host resolved to an address in a blocked range.
	ErrAddressBlocked = errors.New("address blocked")
	// ErrTooManyRedirects: the redirect limit was reached.
	ErrTooManyRedirects = errors.New("too many redirects")
)

// Config is the operator's policy for http_get.
type Config struct {
	// AllowHosts lists the hosts the tool may fetch: an exact host name or IP
	// ("api.example.com", "127.0.0.1") or a "*." wildcard matching any
	// subdomain ("*.example.com" matches a.example.com, not example.com). An
	// empty list allows nothing.
	AllowHosts []string
	// AllowAddrs explicitly allows address ranges that are otherwise blocked
	// (e.g. 127.0.0.0/8 for a local test server, 10.1.2.0/24 for an intranet
	// API). Empty: every blocked range stays blocked.
	AllowAddrs []netip.Prefix
	// MaxBytes caps the response body read; the rest is dropped and the output
	// says truncated. Zero: DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds the whole fetch, redirects included. Zero: DefaultTimeout.
	Timeout time.Duration
	// MaxRedirects caps followed redirects. Zero: DefaultMaxRedirects;
	// negative: no redirects are followed (the 3xx response is returned).
	MaxRedirects int
	// Resolver resolves host names; nil means net.DefaultResolver. Tests use
	// it to map names to addresses.
	Resolver *net.Resolver
}

// Tool is http_get. Build it with New.
type Tool struct {
	cfg    Config
	client *http.Client
}

var _ tools.Tool = (*Tool)(nil)

// New returns an http_get tool enforcing cfg. It rejects malformed allow-list
// entries.
func New(cfg Config) (*Tool, error) {
	hosts := make([]string, 0, len(cfg.AllowHosts))
	for _, raw := range cfg.AllowHosts {
		h := strings.ToLower(strings.TrimSpace(raw))
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		h = strings.TrimSuffix(h, ".")
		if h == "" || h == "*" || h == "*." || strings.ContainsAny(h, "/: ") && !isIP(h) ||
			strings.Contains(h, "*") && (!strings.HasPrefix(h, "*.") || strings.Count(h, "*") > 1) {
			return nil, fmt.Errorf("http_get: bad allow-list host %q (use a host name, an IP or *.domain)", raw)
		}
		hosts = append(hosts, h)
	}
	cfg.AllowHosts = hosts
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	}
	t := &Tool{cfg: cfg}
	dialer := &net.Dialer{
		Timeout:  cfg.Timeout,
		Resolver: cfg.Resolver,
		// The check runs on the address actually being dialed, after DNS
		// resolution, so a name that resolves to a public address at check
		// time and a private one at dial time (DNS rebinding) is still refused.
		Control: func(network, address string, _ syscall.RawConn) error {
			return t.checkDialed(address)
		},
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would be dialed instead of the target, bypassing the check
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          8,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	t.client = &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if cfg.MaxRedirects < 0 {
				return http.ErrUseLastResponse
			}
			if len(via) > cfg.MaxRedirects {
				return fmt.Errorf("%w: more than %d", ErrTooManyRedirects, cfg.MaxRedirects)
			}
			return t.checkURL(req.URL)
		},
	}
	return t, nil
}

// Spec describes http_get.
func (t *Tool) Spec() tools.Spec {
	return tools.Spec{
		Name: Name,
		Description: fmt.Sprintf("Fetches a URL with HTTP GET and returns status, content type and body (text; binary as base64). "+
			"Only allow-listed hosts; bodies over %d bytes are truncated. Allowed hosts: %s.",
			t.cfg.MaxBytes, strings.Join(t.allowedForDoc(), ", ")),
		InputSchema: json.RawMessage(`{"type":"object","properties":{"url":{"type":"string","minLength":8,"maxLength":2048,"pattern":"^[hH][tT][tT][pP][sS]?://","description":"absolute http(s) URL"}},"required":["url"],"additionalProperties":false}`),
		// GET is safe and idempotent by HTTP semantics.
		Idempotent: true,
		// A little above the fetch timeout so that the tool's own, more
		// precise error wins over the gateway's.
		Timeout: t.cfg.Timeout + 2*time.Second,
	}
}

func (t *Tool) allowedForDoc() []string {
	if len(t.cfg.AllowHosts) == 0 {
		return []string{"(none)"}
	}
	return t.cfg.AllowHosts
}

// Output is what the tool returns.
type Output struct {
	URL         string `json:"url"` // final URL, after redirects
	Status      int    `json:"status"`
	ContentType string `json:"contentType,omitempty"`
	Body        string `json:"body,omitempty"`
	BodyBase64  string `json:"bodyBase64,omitempty"`
	Bytes       int    `json:"bytes"`
	Truncated   bool   `json:"truncated"`
}

type input struct {
	URL string `json:"url"`
}

// Run fetches the URL.
func (t *Tool) Run(ctx context.Context, call tools.Call) (json.RawMessage, error) {
	var in input
	if err := json.Unmarshal(call.Input, &in); err != nil {
		return nil, fmt.Errorf("%w: %v", tools.ErrInvalidInput, err)
	}
	u, err := url.Parse(in.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", tools.ErrInvalidInput, err)
	}
	if err := t.checkURL(u); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", tools.ErrInvalidInput, err)
	}
	req.Header.Set("User-Agent", "agentbus-http_get/1")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("http_get %s: %w", u.Redacted(), unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("http_get %s: reading body: %w", u.Redacted(), err)
	}
	out := Output{URL: resp.Request.URL.String(), Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type")}
	if int64(len(body)) > t.cfg.MaxBytes {
		body = body[:t.cfg.MaxBytes]
		out.Truncated = true
		// Don't hand the model half a UTF-8 sequence.
		for i := 0; i < utf8.UTFMax && len(body) > 0 && !utf8.Valid(body); i++ {
			body = body[:len(body)-1]
		}
	}
	out.Bytes = len(body)
	if utf8.Valid(body) {
		out.Body = string(body)
	} else {
		out.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	return json.Marshal(out)
}

// unwrapURLError drops url.Error's "Get \"...\":" prefix but keeps the chain.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// checkURL enforces scheme and host allow list (for the first request and
// every redirect).
func (t *Tool) checkURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: url: scheme %q is not http or https", tools.ErrInvalidInput, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: url: credentials in URLs are not allowed", tools.ErrInvalidInput)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return fmt.Errorf("%w: url: no host", tools.ErrInvalidInput)
	}
	if !t.hostAllowed(host) {
		return fmt.Errorf("%w: %s is not on the allow list", ErrHostNotAllowed, host)
	}
	return nil
}

func (t *Tool) hostAllowed(host string) bool {
	// Compare IP literals in canonical form ("::1" vs "0:0::1").
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	for _, h := range t.cfg.AllowHosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
				return true
			}
			continue
		}
		if a, err := netip.ParseAddr(h); err == nil {
			h = a.Unmap().String()
		}
		if host == h {
			return true
		}
	}
	return false
}

// checkDialed is the Dialer Control hook: address is the resolved ip:port.
func (t *Tool) checkDialed(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialed address %q", ErrAddressBlocked, address)
	}
	addr := ap.Addr().Unmap()
	for _, p := range t.cfg.AllowAddrs {
		if p.Contains(addr) {
			return nil
		}
	}
	if why := Blocked(addr); why != "" {
		return fmt.Errorf("%w: %s is %s (not explicitly allowed)", ErrAddressBlocked, addr, why)
	}
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// extraBlocked are ranges that are not public unicast though the netip
// predicates do not name them.
var extraBlocked = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (this network)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "private (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "private (IETF protocol assignments)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "private (benchmarking)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64 (may reach a private IPv4 address)"},
	{netip.MustParsePrefix("2002::/16"), "6to4 (may reach a private IPv4 address)"},
}

// Blocked reports why addr may not be dialed by default ("" when it may):
// private, loopback, link-local (unicast or multicast), unspecified,
// multicast, and a few reserved or translation ranges.
func Blocked(addr netip.Addr) string {
	addr = addr.Unmap()
	switch {
	case !addr.IsValid():
		return "invalid"
	case addr.IsUnspecified():
		return "unspecified"
	case addr.IsLoopback():
		return "loopback"
	case addr.IsPrivate():
		return "private"
	case addr.IsLinkLocalUnicast():
		return "link-local"
	case addr.IsLinkLocalMulticast(), addr.IsInterfaceLocalMulticast(), addr.IsMulticast():
		return "multicast"
	}
	if addr.Is4() && addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "broadcast"
	}
	for _, b := range extraBlocked {
		if b.p.Contains(addr) {
			return b.why
		}
	}
	return ""
}
