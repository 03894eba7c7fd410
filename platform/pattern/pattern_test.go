package pattern_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentbus/agentbus/platform/pattern"
)

type matchCase struct {
	name    string
	pattern string
	event   string
	want    bool
}

func runMatchCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := pattern.Compile([]byte(c.pattern))
			if err != nil {
				t.Fatalf("Compile(%s): %v", c.pattern, err)
			}
			got, err := p.Match([]byte(c.event))
			if err != nil {
				t.Fatalf("Match(%s): %v", c.event, err)
			}
			if got != c.want {
				t.Fatalf("pattern %s\nevent   %s\nmatch = %v, want %v", c.pattern, c.event, got, c.want)
			}
			// The same answer through a Matcher holding only this rule.
			m := pattern.NewMatcher()
			_ = m.Add("r", p)
			names, err := m.Match([]byte(c.event))
			if err != nil || (len(names) == 1) != c.want {
				t.Fatalf("Matcher.Match = %v, %v; want match=%v", names, err, c.want)
			}
		})
	}
}

// TestDocumentedBehaviour holds cases derived from the Amazon EventBridge
// User Guide; each cites the page and section it comes from.
func TestDocumentedBehaviour(t *testing.T) {
	t.Parallel()
	ec2 := `{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"EC2 Instance State-change Notification",` +
		`"source":"aws.ec2","account":"111122223333","time":"2017-12-22T18:43:48Z","region":"us-west-1",` +
		`"resources":["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],` +
		`"detail":{"instance-id":"i-1234567890abcdef0","state":"terminated"}}`
	runMatchCases(t, []matchCase{
		// "Amazon EventBridge event patterns": the EC2 termination example.
		{"event patterns: ec2 terminated", `{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"],"detail":{"state":["terminated"]}}`, ec2, true},
		{"event patterns: other state", `{"source":["aws.ec2"],"detail":{"state":["running"]}}`, ec2, false},
		// "Event pattern syntax": the event must contain every field the pattern names, with the same nesting.
		{"syntax: missing field", `{"source":["aws.ec2"],"detail":{"missing":["x"]}}`, ec2, false},
		{"syntax: same name, other nesting", `{"state":["terminated"]}`, ec2, false},
		// "Event pattern syntax / Matching event values": values in the array are alternatives.
		{"syntax: alternatives", `{"source":["aws.ec2","aws.fargate"]}`, ec2, true},
		// "Event pattern syntax": matching is exact, character by character and case-sensitive.
		{"syntax: case-sensitive", `{"source":["AWS.EC2"]}`, ec2, false},
		// "Arrays in Amazon EventBridge event patterns": a pattern array matches an event array when they intersect.
		{"arrays: intersect", `{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f","arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"]}`, ec2, true},
		{"arrays: disjoint", `{"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f"]}`, ec2, false},
		// "Matching null values and empty strings": null and "" are values of their own; a missing field is neither.
		{"null: matches null", `{"detail":{"responseElements":[null]}}`, `{"detail":{"responseElements":null}}`, true},
		{"null: not the string null", `{"detail":{"responseElements":[null]}}`, `{"detail":{"responseElements":"null"}}`, false},
		{"null: not a missing field", `{"detail":{"responseElements":[null]}}`, `{"detail":{}}`, false},
		{"empty string: matches empty", `{"detail":{"eventVersion":[""]}}`, `{"detail":{"eventVersion":""}}`, true},
		{"empty string: not null", `{"detail":{"eventVersion":[""]}}`, `{"detail":{"eventVersion":null}}`, false},
		// "Content filtering / Prefix matching".
		{"prefix: time", `{"time":[{"prefix":"2017-10-02"}]}`, `{"time":"2017-10-02T18:43:48Z"}`, true},
		{"prefix: other day", `{"time":[{"prefix":"2017-10-02"}]}`, `{"time":"2017-10-03T18:43:48Z"}`, false},
		{"prefix: strings only", `{"n":[{"prefix":"1"}]}`, `{"n":12}`, false},
		// "Content filtering / Prefix matching while ignoring case".
		{"prefix ignore case", `{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}`, `{"detail":{"service":"eventbridge"}}`, true},
		{"prefix ignore case: no", `{"detail":{"service":[{"prefix":{"equals-ignore-case":"EventB"}}]}}`, `{"detail":{"service":"lambda"}}`, false},
		// "Content filtering / Suffix matching" and "... while ignoring case".
		{"suffix: png", `{"FileName":[{"suffix":".png"}]}`, `{"FileName":"image.png"}`, true},
		{"suffix: case-sensitive", `{"FileName":[{"suffix":".png"}]}`, `{"FileName":"image.PNG"}`, false},
		{"suffix ignore case", `{"detail":{"FileName":[{"suffix":{"equals-ignore-case":".png"}}]}}`, `{"detail":{"FileName":"image.PNG"}}`, true},
		// "Content filtering / Anything-but matching": strings, numbers and lists of either.
		{"anything-but string", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, `{"detail":{"state":"running"}}`, true},
		{"anything-but string: excluded", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, `{"detail":{"state":"initializing"}}`, false},
		{"anything-but number", `{"detail":{"x-limit":[{"anything-but":123}]}}`, `{"detail":{"x-limit":456}}`, true},
		{"anything-but number: excluded by value", `{"detail":{"x-limit":[{"anything-but":123}]}}`, `{"detail":{"x-limit":123.0}}`, false},
		{"anything-but list", `{"detail":{"state":[{"anything-but":["stopped","overloaded"]}]}}`, `{"detail":{"state":"overloaded"}}`, false},
		{"anything-but number list", `{"detail":{"x-limit":[{"anything-but":[100,200,300]}]}}`, `{"detail":{"x-limit":150}}`, true},
		{"anything-but: missing field", `{"detail":{"state":[{"anything-but":"initializing"}]}}`, `{"detail":{}}`, false},
		// "Content filtering / Anything-but matching on prefixes / suffixes / ignoring case / using wildcards".
		{"anything-but prefix", `{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}`, `{"detail":{"state":"initializing"}}`, false},
		{"anything-but prefix: other", `{"detail":{"state":[{"anything-but":{"prefix":"init"}}]}}`, `{"detail":{"state":"running"}}`, true},
		{"anything-but suffix", `{"detail":{"FileName":[{"anything-but":{"suffix":".txt"}}]}}`, `{"detail":{"FileName":"a.txt"}}`, false},
		{"anything-but ignore case", `{"detail":{"state":[{"anything-but":{"equals-ignore-case":["initializing","stopped"]}}]}}`, `{"detail":{"state":"STOPPED"}}`, false},
		{"anything-but wildcard", `{"detail":{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}}`, `{"detail":{"FilePath":"/usr/lib/x.so"}}`, false},
		{"anything-but wildcard: other", `{"detail":{"FilePath":[{"anything-but":{"wildcard":"*/lib/*"}}]}}`, `{"detail":{"FilePath":"/usr/bin/x"}}`, true},
		// "Content filtering / Numeric matching": JSON numbers only, compared by value.
		{"numeric range", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}]}}`, `{"detail":{"c-count":5}}`, true},
		{"numeric range: open bottom", `{"detail":{"c-count":[{"numeric":[">",0,"<=",5]}]}}`, `{"detail":{"c-count":0}}`, false},
		{"numeric equals by value", `{"detail":{"x-limit":[{"numeric":["=",301.8]}]}}`, `{"detail":{"x-limit":3.018e2}}`, true},
		{"numeric: not a string", `{"detail":{"d-count":[{"numeric":["<",10]}]}}`, `{"detail":{"d-count":"5"}}`, false},
		{"numeric: negative", `{"detail":{"d-count":[{"numeric":["<",10]}]}}`, `{"detail":{"d-count":-1e3}}`, true},
		// "Content filtering / IP address matching": IPv4 and IPv6 CIDR.
		{"cidr v4", `{"detail":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}}`, `{"detail":{"sourceIPAddress":"10.0.0.255"}}`, true},
		{"cidr v4: outside", `{"detail":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}}`, `{"detail":{"sourceIPAddress":"10.0.1.0"}}`, false},
		{"cidr v6", `{"detail":{"sourceIPAddress":[{"cidr":"2001:db8:1234:1a00::/64"}]}}`, `{"detail":{"sourceIPAddress":"2001:db8:1234:1a00::1"}}`, true},
		{"cidr v6: outside", `{"detail":{"sourceIPAddress":[{"cidr":"2001:db8:1234:1a00::/64"}]}}`, `{"detail":{"sourceIPAddress":"2001:db8:1234:1a01::1"}}`, false},
		{"cidr: not an address", `{"detail":{"sourceIPAddress":[{"cidr":"10.0.0.0/24"}]}}`, `{"detail":{"sourceIPAddress":"localhost"}}`, false},
		// "Content filtering / Exists matching": leaf nodes only.
		{"exists true", `{"detail":{"state":[{"exists":true}]}}`, `{"detail":{"state":"x"}}`, true},
		{"exists true: missing", `{"detail":{"state":[{"exists":true}]}}`, `{"detail":{}}`, false},
		{"exists true: object is not a leaf", `{"detail":{"state":[{"exists":true}]}}`, `{"detail":{"state":{"a":1}}}`, false},
		{"exists false", `{"detail":{"state":[{"exists":false}]}}`, `{"detail":{}}`, true},
		{"exists false: present", `{"detail":{"state":[{"exists":false}]}}`, `{"detail":{"state":null}}`, false},
		{"exists false: parent missing", `{"detail":{"state":[{"exists":false}]}}`, `{}`, true},
		// "Content filtering / Equals-ignore-case matching".
		{"equals-ignore-case", `{"detail-type":[{"equals-ignore-case":"ec2 instance state-change notification"}]}`, ec2, true},
		{"equals-ignore-case: different", `{"detail-type":[{"equals-ignore-case":"ec2 instance"}]}`, ec2, false},
		// "Content filtering / Wildcard matching": '*' matches any run of characters, "\*" a literal star.
		{"wildcard", `{"EventBusArn":[{"wildcard":"arn:aws:events:us-east-1:*:event-bus/*"}]}`, `{"EventBusArn":"arn:aws:events:us-east-1:123456789012:event-bus/default"}`, true},
		{"wildcard: no", `{"EventBusArn":[{"wildcard":"arn:aws:events:us-east-1:*:event-bus/*"}]}`, `{"EventBusArn":"arn:aws:events:eu-west-1:123456789012:event-bus/default"}`, false},
		{"wildcard: whole value", `{"FileName":[{"wildcard":"/Users/*/doc.txt"}]}`, `{"FileName":"/Users/ana/doc.txt.bak"}`, false},
		{"wildcard: escaped star", `{"v":[{"wildcard":"a\\*b"}]}`, `{"v":"a*b"}`, true},
		{"wildcard: escaped star is literal", `{"v":[{"wildcard":"a\\*b"}]}`, `{"v":"axxb"}`, false},
		{"wildcard: escaped backslash", `{"v":[{"wildcard":"a\\\\*"}]}`, `{"v":"a\\xyz"}`, true},
		// "Content filtering / Complex example with $or matching".
		{"$or top level", `{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization"]},{"namespace":["AWS/EC2"]}]}`, `{"source":"aws.cloudwatch","namespace":"AWS/EC2"}`, true},
		{"$or top level: none", `{"source":["aws.cloudwatch"],"$or":[{"metricName":["CPUUtilization"]},{"namespace":["AWS/EC2"]}]}`, `{"source":"aws.cloudwatch","namespace":"AWS/ES"}`, false},
		{"$or nested", `{"detail":{"$or":[{"c-count":[{"numeric":[">",0,"<=",5]}]},{"d-count":[{"numeric":["<",10]}]}]}}`, `{"detail":{"c-count":50,"d-count":9}}`, true},
		{"$or inside $or", `{"$or":[{"a":["1"]},{"$or":[{"b":["2"]},{"c":["3"]}]}]}`, `{"c":"3"}`, true},
		// "Content filtering / Complex example with multiple matching" (AND across fields).
		{"multiple matching", `{"time":[{"prefix":"2017-10-02"}],"detail":{"state":[{"anything-but":"initializing"}],"c-count":[{"numeric":[">",0,"<=",5]}],"d-count":[{"numeric":["<",10]}],"x-limit":[{"anything-but":[100,200,300]}]}}`,
			`{"time":"2017-10-02T18:43:48Z","detail":{"state":"running","c-count":3,"d-count":9,"x-limit":150}}`, true},
	})
}

// TestSemantics pins behaviour AWS answers that the docs leave implicit.
func TestSemantics(t *testing.T) {
	t.Parallel()
	runMatchCases(t, []matchCase{
		{"number never matches string", `{"n":[5]}`, `{"n":"5"}`, false},
		{"string never matches number", `{"n":["5"]}`, `{"n":5}`, false},
		{"bool never matches string", `{"b":[true]}`, `{"b":"true"}`, false},
		{"numbers by value", `{"n":[300]}`, `{"n":3e2}`, true},
		{"big numbers by text", `{"acct":[123456789012]}`, `{"acct":123456789012}`, true},
		{"big numbers by text: different", `{"acct":[123456789012]}`, `{"acct":123456789013}`, false},
		{"dotted pattern key", `{"detail":{"state.status":["running"]}}`, `{"detail":{"state":{"status":"running"}}}`, true},
		{"dotted event key", `{"detail":{"state":{"status":["running"]}}}`, `{"detail.state":{"status":"running"}}`, true},
		{"array of objects: any element", `{"items":{"sku":["b"]}}`, `{"items":[{"sku":"a"},{"sku":"b"}]}`, true},
		{"array of objects: same element", `{"items":{"sku":["a"],"qty":[2]}}`, `{"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}`, false},
		{"array of objects: consistent element", `{"items":{"sku":["b"],"qty":[2]}}`, `{"items":[{"sku":"a","qty":1},{"sku":"b","qty":2}]}`, true},
		{"array of objects: outer field free", `{"id":["x"],"items":{"sku":["b"]}}`, `{"id":"x","items":[{"sku":"a"},{"sku":"b"}]}`, true},
		{"nested arrays", `{"a":[3]}`, `{"a":[[1,2],[3]]}`, true},
		{"empty array has no value", `{"a":[{"exists":true}]}`, `{"a":[]}`, false},
		{"empty array counts as absent", `{"a":[{"exists":false}]}`, `{"a":[]}`, true},
		{"anything-but any element", `{"a":[{"anything-but":"x"}]}`, `{"a":["x","y"]}`, true},
		{"anything-but matches null", `{"a":[{"anything-but":"x"}]}`, `{"a":null}`, true},
		{"anything-but number vs string", `{"a":[{"anything-but":5}]}`, `{"a":"5"}`, true},
		{"exists false with alternative", `{"a":[{"anything-but":["roses"]},{"exists":false}]}`, `{"b":1}`, true},
		{"exists false alternative, present excluded", `{"a":[{"anything-but":["roses"]},{"exists":false}]}`, `{"a":"roses"}`, false},
		{"exists false judged in the chosen element", `{"arr":{"x":[2],"y":[{"exists":false}]}}`, `{"arr":[{"y":1},{"x":2}]}`, true},
		{"exists false, element has it", `{"arr":{"x":[2],"y":[{"exists":false}]}}`, `{"arr":[{"y":1,"x":2}]}`, false},
		{"exists false alone sees every element", `{"arr":{"y":[{"exists":false}]}}`, `{"arr":[{"y":1},{}]}`, false},
		{"empty key at the top", `{"":{"a":["x"]}}`, `{"":{"a":"x"}}`, true},
		{"empty key is not no key", `{"":{"a":["x"]}}`, `{"a":"x"}`, false},
		{"repeated key: last wins", `{"a":["x"],"a":["y"]}`, `{"a":"y"}`, true},
		{"escaped event key", `{"a\"b":["v"]}`, `{"a\u0022b":"v"}`, true},
		{"escaped event string", `{"a":["é\n"]}`, `{"a":"\u00e9\n"}`, true},
		{"surrogate pair", `{"a":["🚀"]}`, `{"a":"\ud83d\ude80"}`, true},
		{"equals-ignore-case unicode", `{"a":[{"equals-ignore-case":"ÉTÉ"}]}`, `{"a":"été"}`, true},
		{"suffix empty matches any string", `{"a":[{"suffix":""}]}`, `{"a":"x"}`, true},
		{"wildcard empty matches empty only", `{"a":[{"wildcard":""}]}`, `{"a":""}`, true},
		{"wildcard star alone", `{"a":[{"wildcard":"*"}]}`, `{"a":""}`, true},
		{"wildcard overlapping ends", `{"a":[{"wildcard":"ab*ba"}]}`, `{"a":"aba"}`, false},
		{"three wildcards on a field are not too complex", `{"a":[{"wildcard":"*:stack/a/*"},{"wildcard":"*:stack/b/*"},{"wildcard":"*:stack/c/*"}]}`, `{"a":"arn:aws:cloudformation:x:stack/b/1"}`, true},
		{"wildcard middle", `{"a":[{"wildcard":"*x*y*"}]}`, `{"a":"__x__y__"}`, true},
		{"numeric upper only", `{"a":[{"numeric":["<=",5]}]}`, `{"a":5}`, true},
		{"numeric lower inclusive", `{"a":[{"numeric":[">=",5,"<",6]}]}`, `{"a":5}`, true},
		{"numeric upper exclusive", `{"a":[{"numeric":[">=",5,"<",6]}]}`, `{"a":6}`, false},
		{"multiple ranges on one field", `{"a":[{"numeric":["<",0]},{"numeric":[">",10]}]}`, `{"a":11}`, true},
		{"exact IP matches another spelling", `{"a":["2001:db8::1"]}`, `{"a":"2001:DB8:0:0:0:0:0:1"}`, true},
		{"exact IP, other address", `{"a":["10.0.0.1"]}`, `{"a":"10.0.0.2"}`, false},
		{"exact IP, mapped v4 is not v4", `{"a":["::ffff:10.0.0.1"]}`, `{"a":"10.0.0.1"}`, false},
		{"cidr single host", `{"a":[{"cidr":"192.168.1.7/32"}]}`, `{"a":"192.168.1.7"}`, true},
		{"cidr v4 rule, v6 value", `{"a":[{"cidr":"10.0.0.0/8"}]}`, `{"a":"::1"}`, false},
		{"whitespace in event", `{"a":["x"]}`, " {\n \"a\" : \"x\" \t}\r\n", true},
	})
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, pattern, inMsg string
	}{
		{"not json", `{"a":`, "not valid JSON"},
		{"not an object", `["a"]`, "must be a JSON object"},
		{"trailing data", `{"a":["x"]} x`, "not valid JSON"},
		{"empty pattern", `{}`, "empty objects"},
		{"empty nested object", `{"a":{}}`, `"a": empty objects`},
		{"leaf not in array", `{"detail":{"state":"x"}}`, `"detail.state": must be an object or an array`},
		{"empty array", `{"resources":[]}`, "empty arrays"},
		{"nested array", `{"a":[["x"]]}`, "nested arrays"},
		{"unknown operator", `{"a":[{"contains":"x"}]}`, `unrecognized operator "contains"`},
		{"mis-cased operator", `{"a":[{"Prefix":"x"}]}`, "case-sensitive"},
		{"two operators", `{"a":[{"prefix":"x","suffix":"y"}]}`, "only one operator"},
		{"empty expression", `{"a":[{}]}`, "empty match expression"},
		{"prefix number", `{"a":[{"prefix":1}]}`, "prefix must be a string"},
		{"prefix list", `{"a":[{"prefix":["x"]}]}`, "prefix must be a string"},
		{"prefix bad object", `{"a":[{"prefix":{"x":"y"}}]}`, "equals-ignore-case"},
		{"equals-ignore-case list", `{"a":[{"equals-ignore-case":["x"]}]}`, "must be a string"},
		{"exists string", `{"a":[{"exists":"true"}]}`, "true or false"},
		{"numeric not array", `{"a":[{"numeric":5}]}`, "must be an array"},
		{"numeric empty", `{"a":[{"numeric":[]}]}`, "must not be empty"},
		{"numeric bad operator", `{"a":[{"numeric":["==",5]}]}`, "unrecognized numeric operator"},
		{"numeric missing operand", `{"a":[{"numeric":[">",0,"<"]}]}`, "needs a number"},
		{"numeric string operand", `{"a":[{"numeric":[">","0"]}]}`, "must be a number"},
		{"numeric bounds reversed", `{"a":[{"numeric":[">",5,"<",1]}]}`, "must be less than"},
		{"numeric bounds equal", `{"a":[{"numeric":[">=",5,"<=",5]}]}`, "must be less than"},
		{"numeric two lower", `{"a":[{"numeric":[">",0,">",1]}]}`, "second numeric operator"},
		{"numeric upper first", `{"a":[{"numeric":["<",5,">",1]}]}`, "must come last"},
		{"numeric too many", `{"a":[{"numeric":[">",0,"<",5,"<",6]}]}`, "too many terms"},
		{"numeric out of range", `{"a":[{"numeric":[">",6e9]}]}`, "outside the supported range"},
		{"cidr bad", `{"a":[{"cidr":"bad-filter"}]}`, "bad cidr"},
		{"cidr no mask", `{"a":[{"cidr":"10.0.0.1"}]}`, "bad cidr"},
		{"cidr mask too long", `{"a":[{"cidr":"10.0.0.0/33"}]}`, "bad cidr"},
		{"cidr list", `{"a":[{"cidr":["10.0.0.0/8"]}]}`, "cidr must be a string"},
		{"wildcard consecutive", `{"a":[{"wildcard":"a**b"}]}`, "consecutive wildcard"},
		{"wildcard bad escape", `{"a":[{"wildcard":"a\\b"}]}`, "invalid escape"},
		{"wildcard trailing backslash", `{"a":[{"wildcard":"a\\"}]}`, "invalid escape"},
		{"wildcard too complex", `{"a":[{"wildcard":"*:*:*:*:*:event-bus/*"}]}`, "too complex"},
		{"wildcards too complex together", `{"a":[{"wildcard":"*:stack/a/*"},{"wildcard":"*:stack/b/*"},{"wildcard":"*:stack/c/*"},{"wildcard":"*:stack/d/*"}]}`, "too complex"},
		{"wildcard number", `{"a":[{"wildcard":1}]}`, "wildcard must be a string"},
		{"anything-but null", `{"a":[{"anything-but":null}]}`, "anything-but must be"},
		{"anything-but bool", `{"a":[{"anything-but":true}]}`, "anything-but must be"},
		{"anything-but empty list", `{"a":[{"anything-but":[]}]}`, "must not be empty"},
		{"anything-but mixed list", `{"a":[{"anything-but":["x",1]}]}`, "not both"},
		{"anything-but null in list", `{"a":[{"anything-but":["x",null]}]}`, "only strings or only numbers"},
		{"anything-but unknown", `{"a":[{"anything-but":{"numeric":[">",1]}}]}`, "unsupported operator"},
		{"anything-but empty prefix", `{"a":[{"anything-but":{"prefix":""}}]}`, "must not be empty"},
		{"anything-but prefix ignore case", `{"a":[{"anything-but":{"prefix":{"equals-ignore-case":"x"}}}]}`, "list of strings"},
		{"anything-but ignore case number", `{"a":[{"anything-but":{"equals-ignore-case":1}}]}`, "list of strings"},
		{"anything-but wildcard bad", `{"a":[{"anything-but":{"wildcard":"a**"}}]}`, "consecutive wildcard"},
		{"anything-but number range", `{"a":[{"anything-but":1e10}]}`, "outside the supported range"},
		{"$or not array", `{"$or":{"a":["x"]}}`, "must be an array"},
		{"$or one branch", `{"$or":[{"a":["x"]}]}`, "at least 2"},
		{"$or non-object", `{"$or":[{"a":["x"]},"b"]}`, "only objects"},
		{"$or operator as field", `{"$or":[{"prefix":["x"]},{"b":["y"]}]}`, "operator name"},
		{"$or empty branch", `{"$or":[{},{"b":["y"]}]}`, "empty objects"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := pattern.Compile([]byte(c.pattern))
			if err == nil {
				t.Fatalf("Compile(%s) succeeded, want an error", c.pattern)
			}
			if !errors.Is(err, pattern.ErrInvalidPattern) {
				t.Fatalf("error %v does not wrap ErrInvalidPattern", err)
			}
			if !strings.Contains(err.Error(), c.inMsg) {
				t.Fatalf("error %q does not mention %q", err, c.inMsg)
			}
		})
	}
}

func TestMatchInvalidEvents(t *testing.T) {
	t.Parallel()
	p := pattern.MustCompile(`{"a":["x"]}`)
	for _, ev := range []string{``, `   `, `[]`, `"a"`, `{"a":"x"`, `{"a":"x"}}`, `{"a":tru}`, `{"a":01}`, `{"a":"\q"}`,
		`{"a":"x",}`, `{"b":[1,]}`, `{"b":{"c":1,}}`, `{a:1}`, `{"a" "x"}`, `{"b":-}`, `{"b":1.}`, `{"b":1e}`, `{"a":"x` + "\n"} {
		if _, err := p.Match([]byte(ev)); !errors.Is(err, pattern.ErrInvalidEvent) {
			t.Errorf("Match(%q) error = %v, want ErrInvalidEvent", ev, err)
		}
	}
}

func TestMustCompilePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("MustCompile did not panic on an invalid pattern")
		}
	}()
	pattern.MustCompile(`{"a":"x"}`)
}
