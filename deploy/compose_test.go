package deploy

import (
	"bufio"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentbus/agentbus/events/rules"
)

// serveContractEnv is the configuration contract of `agentbus serve <name>`
// (docs/deploy.md), kept in this ONE place: the compose file and the
// Terraform service module are both checked against it. `agentbus serve`
// does not exist yet (issue 5); when it lands, replace this list with the
// binary's own list of the variables it reads, so the checks follow the code.
var serveContractEnv = []string{
	"AGENTBUS_MODE",
	"AWS_REGION",
	"AGENTBUS_BUS_NAME",
	"AGENTBUS_QUEUE_URL",
	"AGENTBUS_DLQ_URL",
	"AGENTBUS_TABLE",
	"AGENTBUS_BUCKET",
	"AGENTBUS_REDIS_ADDR",
	"AGENTBUS_REDIS_TLS",
	"AGENTBUS_REDIS_AUTH_SECRET_ARN",
	"AGENTBUS_BEDROCK_MODEL_ID",
	"AGENTBUS_MAX_EVENT_SIZE",
}

// serveContractSecrets are injected by ECS from Secrets Manager (never plain
// environment in Terraform); compose's Redis has no AUTH and sets none.
var serveContractSecrets = []string{"AGENTBUS_REDIS_PASSWORD"}

// awsSDKEnv are read by the AWS SDK's standard configuration chain, not by
// agentbus itself; compose sets them to reach moto.
var awsSDKEnv = []string{"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}

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
	checkEnvKeys(t, "bootstrap", boot.Environment, append(slices.Clone(bootstrapEnv), append(awsSDKEnv, "AWS_REGION")...))
}

// TestComposeServicesFollowContract: the four services run the one image
// with `serve <name>`, and their environment is the serve contract with
// values consistent with the bootstrap (bus = prefix, same table and bucket)
// and their own catalog queue.
func TestComposeServicesFollowContract(t *testing.T) {
	t.Parallel()
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
	allowed := append(slices.Clone(serveContractEnv), append(slices.Clone(serveContractSecrets), awsSDKEnv...)...)
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
		for _, k := range serveContractEnv {
			if _, ok := env[k]; !ok && k != "AGENTBUS_REDIS_AUTH_SECRET_ARN" {
				t.Errorf("%s: contract variable %s not set", name, k)
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
		if env["AGENTBUS_REDIS_ADDR"] != "redis:6379" {
			t.Errorf("%s: AGENTBUS_REDIS_ADDR=%q, want the redis service", name, env["AGENTBUS_REDIS_ADDR"])
		}
		if s.DependsOn["bootstrap"].Condition != "service_completed_successfully" || s.DependsOn["redis"].Condition != "service_healthy" {
			t.Errorf("%s: must start after the bootstrap completed and redis is healthy", name)
		}
	}
}

// TestTerraformServiceFollowsContract: the ECS task's environment and
// secrets are exactly the serve contract.
func TestTerraformServiceFollowsContract(t *testing.T) {
	t.Parallel()
	m := loadModule(t, serviceDir)
	for _, s := range services {
		env, secrets, err := EnvironmentContract(m, s)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Sorted(slices.Values(serveContractEnv))
		if !slices.Equal(env, want) {
			t.Errorf("%s: task environment %v, want %v", s, env, want)
		}
		if !slices.Equal(secrets, serveContractSecrets) {
			t.Errorf("%s: task secrets %v, want %v", s, secrets, serveContractSecrets)
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
	cgoOff := false
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
	if entrypoint != `["/agentbus"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/agentbus\"]", entrypoint)
	}
}
