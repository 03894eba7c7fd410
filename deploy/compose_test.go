package deploy

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentbus/agentbus/events/rules"
)

// serveSettingsSource is where `agentbus serve` declares its settings: the
// table serveSettings (flag, environment variable, usage, services that need
// it). The checks below read that table from the source, so the compose file
// and the Terraform service module are checked against the variables the
// binary really reads; this is the ONE place the contract comes from.
const serveSettingsSource = "../cmd/agentbus/awsconfig.go"

// serveEnv is one environment variable of `agentbus serve`.
type serveEnv struct {
	Name string
	Need []string // services that require it; empty: optional
}

// loadServeContract parses serveSettings and serveServices out of
// serveSettingsSource. A change of their shape fails here, loudly.
func loadServeContract(t *testing.T) (env []serveEnv, svcs []string) {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, serveSettingsSource, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	strs := func(e ast.Expr) []string {
		cl, ok := e.(*ast.CompositeLit)
		if !ok {
			return nil
		}
		var out []string
		for _, el := range cl.Elts {
			if bl, ok := el.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				s, _ := strconv.Unquote(bl.Value)
				out = append(out, s)
			}
		}
		return out
	}
	var settings *ast.CompositeLit
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, sp := range gd.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				switch n.Name {
				case "serveServices":
					svcs = strs(vs.Values[i])
				case "serveSettings":
					settings, _ = vs.Values[i].(*ast.CompositeLit)
				}
			}
		}
	}
	if settings == nil || len(svcs) == 0 {
		t.Fatalf("%s: serveSettings/serveServices not found", serveSettingsSource)
	}
	for _, el := range settings.Elts {
		cl, ok := el.(*ast.CompositeLit)
		if !ok || len(cl.Elts) != 4 {
			t.Fatalf("%s: a serveSettings entry is not {flag, env, usage, need}", fset.Position(el.Pos()))
		}
		name, ok := cl.Elts[1].(*ast.BasicLit)
		if !ok {
			t.Fatalf("%s: env name is not a literal", fset.Position(cl.Pos()))
		}
		e := serveEnv{}
		e.Name, _ = strconv.Unquote(name.Value)
		if e.Name == "" {
			continue // a flag without an environment variable (--endpoint)
		}
		switch need := cl.Elts[3].(type) {
		case *ast.Ident:
			if need.Name == "serveServices" {
				e.Need = svcs
			} else if need.Name != "nil" {
				t.Fatalf("%s: unknown need %s", fset.Position(need.Pos()), need.Name)
			}
		default:
			e.Need = strs(need)
		}
		env = append(env, e)
	}
	if len(env) < 10 {
		t.Fatalf("%s: only %d environment variables found", serveSettingsSource, len(env))
	}
	return env, svcs
}

func envNames(env []serveEnv) []string {
	out := make([]string, len(env))
	for i, e := range env {
		out[i] = e.Name
	}
	return out
}

// secretEnv are the serve variables Terraform injects from Secrets Manager
// (ECS secrets), never as plain environment.
var secretEnv = []string{"AGENTBUS_REDIS_PASSWORD"}

// awsSDKEnv are read by the AWS SDK's standard configuration chain, not by
// agentbus itself; compose sets them to reach moto, ECS sets the region.
var awsSDKEnv = []string{"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

// bootstrapEnv are what `agentbus stack bootstrap` reads (cmd/agentbus/stack.go).
var bootstrapEnv = []string{"AGENTBUS_PREFIX", "AGENTBUS_TABLE", "AGENTBUS_BUCKET"}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	// A misspelt key (enviroment:) must fail, not vanish.
	var raw struct {
		Services map[string]map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for name, s := range raw.Services {
		for k := range s {
			if !slices.Contains(composeServiceKeys, k) {
				t.Errorf("service %s: unknown key %q", name, k)
			}
		}
	}
	return c
}

// composeServiceKeys are the Compose service keys this file may use.
var composeServiceKeys = []string{
	"image", "build", "entrypoint", "command", "environment", "depends_on", "healthcheck", "ports", "restart",
}

func TestComposeStructure(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	var names []string
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"bootstrap", "executor", "memory", "moto", "moto-config", "planner", "redis", "toolgateway"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	moto := c.Services["moto"]
	if !strings.HasPrefix(moto.Image, "motoserver/moto:") || strings.HasSuffix(moto.Image, ":latest") {
		t.Errorf("moto image %q: want motoserver/moto pinned to a version", moto.Image)
	}
	if moto.Healthcheck == nil {
		t.Error("moto needs a healthcheck: moto-config and bootstrap wait for it")
	}
	cfg := c.Services["moto-config"]
	script := strings.Join(append(cfg.Entrypoint, cfg.Command...), " ")
	if !strings.Contains(script, `"execute_state_machine": True`) || !strings.Contains(script, "http://moto:5000/moto-api/config") {
		t.Errorf("moto-config must POST {\"stepfunctions\": {\"execute_state_machine\": true}} to moto's config API, got %q", script)
	}
	if cfg.DependsOn["moto"].Condition != "service_healthy" {
		t.Error("moto-config must wait for a healthy moto")
	}
	if r := c.Services["redis"]; !strings.HasPrefix(r.Image, "redis:") || r.Healthcheck == nil {
		t.Errorf("redis: want a pinned redis image with a healthcheck, got %+v", r)
	}

	boot := c.Services["bootstrap"]
	if !slices.Equal(boot.Command, []string{"stack", "bootstrap"}) {
		t.Errorf("bootstrap command %v, want [stack bootstrap]", boot.Command)
	}
	if boot.DependsOn["moto-config"].Condition != "service_completed_successfully" {
		t.Error("bootstrap must run after moto is configured")
	}
	checkEnvKeys(t, "bootstrap", boot.Environment, append(slices.Clone(bootstrapEnv), awsSDKEnv...))
}

// TestComposeServicesFollowContract: the four services run the one image
// with `serve <name>`, and their environment is made of the variables the
// binary reads (every one it requires for that service set), with values
// consistent with the bootstrap (bus = prefix, same table and bucket) and
// their own catalog queue.
func TestComposeServicesFollowContract(t *testing.T) {
	t.Parallel()
	contract, svcs := loadServeContract(t)
	if !slices.Equal(slices.Sorted(slices.Values(svcs)), services) {
		t.Fatalf("agentbus serve runs %v, the deployment %v", svcs, services)
	}
	c := loadCompose(t)
	boot := c.Services["bootstrap"]
	catalog, err := rules.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	specs, err := rules.Queues(catalog)
	if err != nil {
		t.Fatal(err)
	}
	allowed := append(envNames(contract), awsSDKEnv...)
	for _, name := range services {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if s.Image != boot.Image || s.Image == "" {
			t.Errorf("%s: image %q, want the one agentbus image %q", name, s.Image, boot.Image)
		}
		if s.Build == nil || s.Build.Context != "." || s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: want build context . with the repository's Dockerfile, got %+v", name, s.Build)
		}
		if !slices.Equal(s.Command, []string{"serve", name}) {
			t.Errorf("%s: command %v, want [serve %s]", name, s.Command, name)
		}
		env := s.Environment
		checkEnvKeys(t, name, env, allowed)
		for _, e := range contract {
			if slices.Contains(e.Need, name) && env[e.Name] == "" {
				t.Errorf("%s: %s is required by agentbus serve %s but not set", name, e.Name, name)
			}
		}
		wantVals := map[string]string{
			"AGENTBUS_MODE":     "aws",
			"AWS_ENDPOINT_URL":  "http://moto:5000",
			"AGENTBUS_BUS_NAME": boot.Environment["AGENTBUS_PREFIX"],
			"AGENTBUS_TABLE":    boot.Environment["AGENTBUS_TABLE"],
			"AGENTBUS_BUCKET":   boot.Environment["AGENTBUS_BUCKET"],
			"AWS_REGION":        boot.Environment["AWS_REGION"],
		}
		for k, v := range wantVals {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", name, k, env[k], v)
			}
		}
		queue := boot.Environment["AGENTBUS_PREFIX"] + "-" + name
		if !strings.HasSuffix(env["AGENTBUS_QUEUE_URL"], "/"+queue) || !strings.HasSuffix(env["AGENTBUS_DLQ_URL"], "/"+queue+"-dlq") {
			t.Errorf("%s: queue URLs %q, %q do not name %s and its DLQ", name, env["AGENTBUS_QUEUE_URL"], env["AGENTBUS_DLQ_URL"], queue)
		}
		if !slices.ContainsFunc(specs, func(q rules.QueueSpec) bool { return q.Name == name }) {
			t.Errorf("%s: no queue %s in the rule catalog, so bootstrap would not create it", name, name)
		}
		if v, ok := env["AGENTBUS_REDIS_ADDR"]; ok && v != "redis:6379" {
			t.Errorf("%s: AGENTBUS_REDIS_ADDR=%q, want the redis service", name, v)
		}
		if s.DependsOn["bootstrap"].Condition != "service_completed_successfully" || s.DependsOn["redis"].Condition != "service_healthy" {
			t.Errorf("%s: must start after the bootstrap completed and redis is healthy", name)
		}
	}
}

// TestTerraformServiceFollowsContract: the ECS task's environment and
// secrets are variables agentbus serve reads, every one it requires for the
// service is there, and the Redis AUTH token comes only as a secret.
func TestTerraformServiceFollowsContract(t *testing.T) {
	t.Parallel()
	contract, _ := loadServeContract(t)
	names := envNames(contract)
	m := loadModule(t, serviceDir)
	for _, s := range services {
		env, secrets, err := EnvironmentContract(m, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range env {
			if !slices.Contains(names, k) && !slices.Contains(awsSDKEnv, k) {
				t.Errorf("%s: task environment %s is not read by agentbus serve", s, k)
			}
			if slices.Contains(secretEnv, k) {
				t.Errorf("%s: %s must be an ECS secret, not plain environment", s, k)
			}
		}
		if !slices.Equal(secrets, secretEnv) {
			t.Errorf("%s: task secrets %v, want %v", s, secrets, secretEnv)
		}
		for _, e := range contract {
			if slices.Contains(e.Need, s) && !slices.Contains(env, e.Name) && !slices.Contains(secrets, e.Name) {
				t.Errorf("%s: %s is required by agentbus serve %s but the task does not set it", s, e.Name, s)
			}
		}
		if !slices.Contains(env, "AGENTBUS_MODE") || !slices.Contains(env, "AWS_REGION") {
			t.Errorf("%s: the task must set AGENTBUS_MODE and AWS_REGION", s)
		}
	}
}

func checkEnvKeys(t *testing.T, service string, env map[string]string, allowed []string) {
	t.Helper()
	for k := range env {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: environment variable %s is not part of the contract", service, k)
		}
	}
}

// TestDockerfile: multi-stage, static binary, distroless (or scratch),
// non-root, the agentbus binary as entrypoint.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms []string
	var user, entrypoint string
	cgoOff, sagas := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
			user = "" // USER applies per stage
		case "USER":
			user = fields[1]
		case "ENTRYPOINT":
			entrypoint = strings.Join(fields[1:], " ")
		case "COPY":
			// The saga definitions, and only them (not the demo
			// scripts), in the final image (docs/sagas.md).
			if len(froms) >= 2 && slices.Equal(fields[1:], []string{"examples/sagas/*.json", "/etc/agentbus/sagas/"}) {
				sagas = true
			}
		}
		if strings.Contains(line, "CGO_ENABLED=0") && len(froms) == 1 {
			cgoOff = true
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, got FROM %v", froms)
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless static or scratch", final)
	}
	if !cgoOff {
		t.Error("the build stage must build with CGO_ENABLED=0 (a static binary)")
	}
	if user == "" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0") {
		t.Errorf("final stage USER %q: want a non-root user", user)
	}
	if !sagas {
		t.Error("the final stage must COPY examples/sagas/*.json /etc/agentbus/sagas/ (the saga definitions for AGENTBUS_SAGAS_DIR)")
	}
	if entrypoint != `["/agentbus"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/agentbus\"]", entrypoint)
	}
}
