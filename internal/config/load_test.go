package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/qparams"
)

// testSpec is composed the way the package doc tells binaries to.
type testSpec struct {
	Qualys Qualys
	NATS   NATS
	S3     S3
	Log    Log
	Fleet
}

// setEnv empties every QFETCH_* variable (empty is unset for Load) and sets env.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "QFETCH_") {
			t.Setenv(name, "")
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func validEnv() map[string]string {
	return map[string]string{
		"QFETCH_QUALYS_URL":      "https://qualysapi.qg2.apps.qualys.com",
		"QFETCH_QUALYS_USERNAME": "bob",
		"QFETCH_QUALYS_PASSWORD": marker,
		"QFETCH_NATS_URL":        "nats://127.0.0.1:4222",
		"QFETCH_S3_ENDPOINT":     "127.0.0.1:9000",
		"QFETCH_S3_BUCKET":       "lake",
	}
}

// with returns validEnv changed by kv pairs; "" unsets.
func with(kv ...string) map[string]string {
	env := validEnv()
	for i := 0; i < len(kv); i += 2 {
		env[kv[i]] = kv[i+1]
	}
	return env
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	lines := strings.Split(err.Error(), "\n")
	slices.Sort(lines)
	return lines
}

var wantVars = []string{
	"QFETCH_QUALYS_URL", "QFETCH_QUALYS_USERNAME", "QFETCH_QUALYS_PASSWORD", "QFETCH_QUALYS_CA_FILE",
	"QFETCH_QUALYS_CONNECT_TIMEOUT", "QFETCH_QUALYS_HEADER_TIMEOUT", "QFETCH_QUALYS_IDLE_TIMEOUT",
	"QFETCH_QUALYS_API_VERSION", "QFETCH_QUALYS_MIN_RATE_BYTES", "QFETCH_QUALYS_MIN_RATE_WINDOW",
	"QFETCH_QUALYS_HOSTLIST_PARAMS", "QFETCH_QUALYS_DETECTION_PARAMS",
	"QFETCH_QUALYS_TRUNCATION_LIMIT", "QFETCH_QUALYS_HOSTLIST_PAGE_SIZE", "QFETCH_QUALYS_HOSTLIST_DETAILS",
	"QFETCH_QUALYS_KB_PARAMS",
	"QFETCH_QUALYS_SHOW_TAGS",
	"QFETCH_NATS_URL", "QFETCH_NATS_CREDS_FILE", "QFETCH_NATS_NKEY_FILE", "QFETCH_NATS_CA_FILE",
	"QFETCH_NATS_CERT_FILE", "QFETCH_NATS_KEY_FILE", "QFETCH_NATS_STREAM_REPLICAS",
	"QFETCH_S3_ENDPOINT", "QFETCH_S3_SECURE", "QFETCH_S3_ACCESS_KEY", "QFETCH_S3_SECRET_KEY",
	"QFETCH_S3_BUCKET", "QFETCH_S3_PREFIX", "QFETCH_S3_REGION", "QFETCH_S3_CA_FILE",
	"QFETCH_LOG_FORMAT", "QFETCH_LOG_LEVEL",
	"QFETCH_BATCH_SIZE", "QFETCH_MAX_IN_FLIGHT",
}

// The names are a contract with deploy/k8s and the README: a rename fails here.
func TestVarNames(t *testing.T) {
	vars, err := Vars(Prefix, &testSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var names, secrets []string
	for _, v := range vars {
		names = append(names, v.Name)
		if v.Secret {
			secrets = append(secrets, v.Name)
		}
	}
	if !slices.Equal(names, wantVars) {
		t.Errorf("variables:\n got %q\nwant %q", names, wantVars)
	}
	wantSecrets := []string{"QFETCH_QUALYS_PASSWORD", "QFETCH_S3_ACCESS_KEY", "QFETCH_S3_SECRET_KEY"}
	if !slices.Equal(secrets, wantSecrets) {
		t.Errorf("secrets (with _FILE): got %q, want %q", secrets, wantSecrets)
	}
}

// Load names variables exactly as envconfig does, so the envconfig tags on
// the sections mean what envconfig's documentation says.
func TestVarNamesMatchEnvconfig(t *testing.T) {
	type deep struct {
		Outer struct {
			Fleet
			SplitMe    string `split_words:"true"`
			CAFile     string `split_words:"true"`
			Ignored    string `ignored:"true"`
			Ptr        *NATS
			When       time.Time
			unexported string
		}
	}
	tmpl := template.Must(template.New("").Parse("{{range .}}{{.Key}}\n{{end}}"))
	for _, tt := range []struct {
		prefix string
		spec   any
	}{
		{Prefix, &testSpec{}},
		{"QFETCH_QUALYS", &Qualys{}},
		{"QFETCH_NATS", &NATS{}},
		{"QFETCH_S3", &S3{}},
		{"QFETCH_LOG", &Log{}},
		{Prefix, &Fleet{}},
		{"X", &deep{}},
		{"", &deep{}},
	} {
		var buf bytes.Buffer
		if err := envconfig.Usaget(tt.prefix, tt.spec, &buf, tmpl); err != nil {
			t.Fatal(err)
		}
		want := strings.Fields(buf.String())
		vars, err := Vars(tt.prefix, tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vars {
			got = append(got, v.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%T with prefix %q:\n got %q\nenvconfig %q", tt.spec, tt.prefix, got, want)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	setEnv(t, validEnv())
	var got testSpec
	if err := Load(Prefix, &got); err != nil {
		t.Fatal(err)
	}
	want := testSpec{
		Qualys: Qualys{URL: "https://qualysapi.qg2.apps.qualys.com", Username: "bob", Password: marker,
			ConnectTimeout: 30 * time.Second, HeaderTimeout: 10 * time.Minute, IdleTimeout: 5 * time.Minute,
			APIVersion: "2.0", MinRateBytes: 256 << 10, MinRateWindow: 10 * time.Minute, HostListPageSize: 100000,
			HostListDetails: "Basic"},
		NATS:  NATS{URL: "nats://127.0.0.1:4222", StreamReplicas: 1},
		S3:    S3{Endpoint: "127.0.0.1:9000", Secure: true, Bucket: "lake", Prefix: "qualys"},
		Log:   Log{Format: "auto", Level: "info"},
		Fleet: Fleet{BatchSize: 1000, MaxInFlight: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, with(
		"QFETCH_QUALYS_URL", "http://127.0.0.1:8080/",
		"QFETCH_QUALYS_CA_FILE", ca,
		"QFETCH_QUALYS_CONNECT_TIMEOUT", "5s",
		"QFETCH_QUALYS_HEADER_TIMEOUT", "1h",
		"QFETCH_QUALYS_IDLE_TIMEOUT", " 90s ",
		"QFETCH_QUALYS_API_VERSION", "3.0",
		"QFETCH_QUALYS_MIN_RATE_BYTES", "1024",
		"QFETCH_QUALYS_MIN_RATE_WINDOW", "2m",
		"QFETCH_QUALYS_HOSTLIST_PARAMS", "use_tags=1&tag_set_include=123%2C456",
		"QFETCH_QUALYS_DETECTION_PARAMS", "status=New,Active&show_igs=1",
		"QFETCH_QUALYS_TRUNCATION_LIMIT", "500",
		"QFETCH_QUALYS_HOSTLIST_PAGE_SIZE", "0",
		"QFETCH_QUALYS_HOSTLIST_DETAILS", "All",
		"QFETCH_NATS_URL", "nats://a:4222, tls://b:4222,c:4222",
		"QFETCH_NATS_CREDS_FILE", ca,
		"QFETCH_NATS_STREAM_REPLICAS", "3",
		"QFETCH_S3_ENDPOINT", "s3.eu-west-1.amazonaws.com",
		"QFETCH_S3_SECURE", "false",
		"QFETCH_S3_ACCESS_KEY", "AKIA",
		"QFETCH_S3_SECRET_KEY", marker,
		"QFETCH_S3_PREFIX", "vm/qualys",
		"QFETCH_S3_REGION", "eu-west-1",
		"QFETCH_S3_CA_FILE", ca,
		"QFETCH_LOG_FORMAT", "json",
		"QFETCH_LOG_LEVEL", "debug",
		"QFETCH_BATCH_SIZE", "10000",
		"QFETCH_MAX_IN_FLIGHT", "7",
	))
	var got testSpec
	if err := Load(Prefix, &got); err != nil {
		t.Fatal(err)
	}
	want := testSpec{
		Qualys: Qualys{URL: "http://127.0.0.1:8080/", Username: "bob", Password: marker, CAFile: ca,
			ConnectTimeout: 5 * time.Second, HeaderTimeout: time.Hour, IdleTimeout: 90 * time.Second, APIVersion: "3.0",
			MinRateBytes: 1024, MinRateWindow: 2 * time.Minute,
			HostListParams:           Params{"use_tags": {"1"}, "tag_set_include": {"123,456"}},
			DetectionParams:          Params{"status": {"New,Active"}, "show_igs": {"1"}},
			DetectionTruncationLimit: 500, HostListPageSize: 0, HostListDetails: "All"},
		NATS: NATS{URL: "nats://a:4222, tls://b:4222,c:4222", CredsFile: ca, StreamReplicas: 3},
		S3: S3{Endpoint: "s3.eu-west-1.amazonaws.com", Secure: false, AccessKey: "AKIA", SecretKey: marker,
			Bucket: "lake", Prefix: "vm/qualys", Region: "eu-west-1", CAFile: ca},
		Log:   Log{Format: "json", Level: "debug"},
		Fleet: Fleet{BatchSize: 10000, MaxInFlight: 7},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if v := got.Qualys.DetectionParams.Values(); v.Encode() != "show_igs=1&status=New%2CActive" {
		t.Errorf("Values().Encode() = %q", v.Encode())
	}
}

// A variable set to "" (a blank line in a ConfigMap, QFETCH_BATCH_SIZE=)
// behaves as unset: defaults stay, required ones are reported missing.
func TestLoadEmptyIsUnset(t *testing.T) {
	env := validEnv()
	for _, k := range []string{"QFETCH_BATCH_SIZE", "QFETCH_MAX_IN_FLIGHT", "QFETCH_S3_PREFIX", "QFETCH_S3_SECURE",
		"QFETCH_QUALYS_HEADER_TIMEOUT", "QFETCH_QUALYS_API_VERSION", "QFETCH_LOG_LEVEL", "QFETCH_NATS_STREAM_REPLICAS",
		"QFETCH_QUALYS_PASSWORD_FILE", "QFETCH_S3_ACCESS_KEY", "QFETCH_S3_SECRET_KEY_FILE"} {
		env[k] = ""
	}
	setEnv(t, env)
	var got testSpec
	if err := Load(Prefix, &got); err != nil {
		t.Fatal(err)
	}
	if got.BatchSize != 1000 || got.MaxInFlight != 2 || got.S3.Prefix != "qualys" || !got.S3.Secure ||
		got.Qualys.HeaderTimeout != 10*time.Minute || got.Qualys.APIVersion != "2.0" || got.Log.Level != "info" ||
		got.NATS.StreamReplicas != 1 || got.Qualys.Password != marker {
		t.Fatalf("defaults lost: %+v", got)
	}

	setEnv(t, with("QFETCH_QUALYS_URL", "", "QFETCH_QUALYS_PASSWORD", ""))
	err := Load(Prefix, &testSpec{})
	want := []string{"QFETCH_QUALYS_PASSWORD: required (or set QFETCH_QUALYS_PASSWORD_FILE)", "QFETCH_QUALYS_URL: required"}
	if got := errLines(err); !slices.Equal(got, want) {
		t.Fatalf("errors:\n got %q\nwant %q", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	emptyFile := filepath.Join(dir, "empty")
	newlineFile := filepath.Join(dir, "newline")
	bigFile := filepath.Join(dir, "big")
	for p, content := range map[string]string{emptyFile: "", newlineFile: "\n", bigFile: strings.Repeat("x", 65<<10)} {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"valid", validEnv(), nil},
		{"no qualys url", with("QFETCH_QUALYS_URL", ""), []string{"QFETCH_QUALYS_URL: required"}},
		{"no username", with("QFETCH_QUALYS_USERNAME", ""), []string{"QFETCH_QUALYS_USERNAME: required"}},
		{"no password", with("QFETCH_QUALYS_PASSWORD", ""),
			[]string{"QFETCH_QUALYS_PASSWORD: required (or set QFETCH_QUALYS_PASSWORD_FILE)"}},
		{"no nats url", with("QFETCH_NATS_URL", ""), []string{"QFETCH_NATS_URL: required"}},
		{"no s3 endpoint", with("QFETCH_S3_ENDPOINT", ""), []string{"QFETCH_S3_ENDPOINT: required"}},
		{"no bucket", with("QFETCH_S3_BUCKET", ""), []string{"QFETCH_S3_BUCKET: required"}},
		{"nothing set", map[string]string{}, []string{
			"QFETCH_NATS_URL: required",
			"QFETCH_QUALYS_PASSWORD: required (or set QFETCH_QUALYS_PASSWORD_FILE)",
			"QFETCH_QUALYS_URL: required",
			"QFETCH_QUALYS_USERNAME: required",
			"QFETCH_S3_BUCKET: required",
			"QFETCH_S3_ENDPOINT: required",
		}},
		// envconfig would read the bare tag name when the prefixed one is unset.
		{"no unprefixed fallback", with("QFETCH_QUALYS_URL", "", "URL", "https://elsewhere"), []string{"QFETCH_QUALYS_URL: required"}},

		{"batch size zero", with("QFETCH_BATCH_SIZE", "0"), []string{"QFETCH_BATCH_SIZE: must be between 1 and 10000, got 0"}},
		{"batch size big", with("QFETCH_BATCH_SIZE", "10001"), []string{"QFETCH_BATCH_SIZE: must be between 1 and 10000, got 10001"}},
		{"batch size text", with("QFETCH_BATCH_SIZE", "1k"), []string{`QFETCH_BATCH_SIZE: not an integer, got "1k"`}},
		{"batch size overflow", with("QFETCH_BATCH_SIZE", "99999999999999999999"), []string{`QFETCH_BATCH_SIZE: out of range, got "99999999999999999999"`}},
		{"in flight zero", with("QFETCH_MAX_IN_FLIGHT", "0"), []string{"QFETCH_MAX_IN_FLIGHT: must be 1 or more, got 0"}},
		{"duration without unit", with("QFETCH_QUALYS_CONNECT_TIMEOUT", "30"),
			[]string{`QFETCH_QUALYS_CONNECT_TIMEOUT: not a duration (like 30s, 10m or 1h30m), got "30"`}},
		{"negative duration", with("QFETCH_QUALYS_HEADER_TIMEOUT", "-1s"), []string{"QFETCH_QUALYS_HEADER_TIMEOUT: must be positive, got -1s"}},
		{"zero duration", with("QFETCH_QUALYS_IDLE_TIMEOUT", "0s"), []string{"QFETCH_QUALYS_IDLE_TIMEOUT: must be positive, got 0s"}},
		{"min rate zero", with("QFETCH_QUALYS_MIN_RATE_BYTES", "0"), []string{"QFETCH_QUALYS_MIN_RATE_BYTES: must be positive, got 0"}},
		{"min rate window under idle", with("QFETCH_QUALYS_MIN_RATE_WINDOW", "4m"),
			[]string{"QFETCH_QUALYS_MIN_RATE_WINDOW: must be at least the idle timeout (5m0s), got 4m0s"}},
		{"idle over default window", with("QFETCH_QUALYS_IDLE_TIMEOUT", "15m"),
			[]string{"QFETCH_QUALYS_MIN_RATE_WINDOW: must be at least the idle timeout (15m0s), got 10m0s"}},
		{"min rate window equal to idle", with("QFETCH_QUALYS_MIN_RATE_WINDOW", "5m"), nil},
		{"bool", with("QFETCH_S3_SECURE", "yes"), []string{`QFETCH_S3_SECURE: not a boolean (true or false), got "yes"`}},
		{"log format", with("QFETCH_LOG_FORMAT", "xml"), []string{`QFETCH_LOG_FORMAT: must be auto, text or json, got "xml"`}},
		{"log level", with("QFETCH_LOG_LEVEL", "trace"), []string{`QFETCH_LOG_LEVEL: must be debug, info, warn or error, got "trace"`}},
		{"api version", with("QFETCH_QUALYS_API_VERSION", "v2"), []string{`QFETCH_QUALYS_API_VERSION: must look like 2.0, got "v2"`}},
		{"truncation limit", with("QFETCH_QUALYS_TRUNCATION_LIMIT", "-1"), []string{"QFETCH_QUALYS_TRUNCATION_LIMIT: must be 0 or more, got -1"}},
		{"page size", with("QFETCH_QUALYS_HOSTLIST_PAGE_SIZE", "-5"), []string{"QFETCH_QUALYS_HOSTLIST_PAGE_SIZE: must be 0 or more, got -5"}},
		{"details None", with("QFETCH_QUALYS_HOSTLIST_DETAILS", "None"), nil},
		{"details lower case", with("QFETCH_QUALYS_HOSTLIST_DETAILS", "basic"), []string{`QFETCH_QUALYS_HOSTLIST_DETAILS: must be None, Basic or All, got "basic"`}},
		{"details with asset groups", with("QFETCH_QUALYS_HOSTLIST_DETAILS", "All/AGs"), []string{`QFETCH_QUALYS_HOSTLIST_DETAILS: must be None, Basic or All, got "All/AGs"`}},
		{"username colon", with("QFETCH_QUALYS_USERNAME", "bob:x"), []string{"QFETCH_QUALYS_USERNAME: must not contain ':'"}},
		{"show tags", with("QFETCH_QUALYS_SHOW_TAGS", "true", "QFETCH_QUALYS_DETECTION_PARAMS", "show_tags=1"), nil},
		{"show tags contradicted", with("QFETCH_QUALYS_SHOW_TAGS", "true", "QFETCH_QUALYS_HOSTLIST_PARAMS", "show_tags=0"),
			[]string{"QFETCH_QUALYS_SHOW_TAGS: is true, but QUALYS_HOSTLIST_PARAMS sets show_tags=0; leave show_tags out of it"}},
		{"show tags text", with("QFETCH_QUALYS_SHOW_TAGS", "1x"), []string{`QFETCH_QUALYS_SHOW_TAGS: not a boolean (true or false), got "1x"`}},

		// http:// only to a loopback host (#17.9).
		{"url http", with("QFETCH_QUALYS_URL", "http://qualysim:8080"), []string{`QFETCH_QUALYS_URL: http:// would send the password in clear text; use https:// (http:// is accepted only for a loopback host: localhost, 127.0.0.0/8, ::1), got host "qualysim"`}},
		{"url http address", with("QFETCH_QUALYS_URL", "http://10.0.0.7"), []string{`QFETCH_QUALYS_URL: http:// would send the password in clear text; use https:// (http:// is accepted only for a loopback host: localhost, 127.0.0.0/8, ::1), got host "10.0.0.7"`}},
		{"url http not quite loopback", with("QFETCH_QUALYS_URL", "http://127.0.0.1.example.com"), []string{`QFETCH_QUALYS_URL: http:// would send the password in clear text; use https:// (http:// is accepted only for a loopback host: localhost, 127.0.0.0/8, ::1), got host "127.0.0.1.example.com"`}},
		{"url http localhost", with("QFETCH_QUALYS_URL", "http://localhost:8080"), nil},
		{"url http LOCALHOST", with("QFETCH_QUALYS_URL", "http://LOCALHOST"), nil},
		{"url http 127.0.0.1", with("QFETCH_QUALYS_URL", "http://127.0.0.1:8080/"), nil},
		{"url http 127.8.9.10", with("QFETCH_QUALYS_URL", "http://127.8.9.10"), nil},
		{"url http ::1", with("QFETCH_QUALYS_URL", "http://[::1]:8080"), nil},
		{"url https anywhere", with("QFETCH_QUALYS_URL", "https://qualysim:8443"), nil},
		{"url trailing slash", with("QFETCH_QUALYS_URL", "https://h/"), nil},
		{"url scheme", with("QFETCH_QUALYS_URL", "ftp://h"), []string{`QFETCH_QUALYS_URL: must start with https:// or http://, got scheme "ftp"`}},
		{"url no scheme", with("QFETCH_QUALYS_URL", "qualysapi.qualys.com"), []string{`QFETCH_QUALYS_URL: must start with https:// or http://, got scheme ""`}},
		{"url no host", with("QFETCH_QUALYS_URL", "https://"), []string{"QFETCH_QUALYS_URL: has no host (want https://host)"}},
		{"url path", with("QFETCH_QUALYS_URL", "https://h/api/2.0/fo/"), []string{"QFETCH_QUALYS_URL: must be only scheme://host[:port]; qfetch adds the API path"}},
		{"url query", with("QFETCH_QUALYS_URL", "https://h?x=1"), []string{"QFETCH_QUALYS_URL: must be only scheme://host[:port]; qfetch adds the API path"}},
		{"url garbage", with("QFETCH_QUALYS_URL", "https://h\x7f"), []string{"QFETCH_QUALYS_URL: not a valid URL (want https://host)"}},
		{"url userinfo", with("QFETCH_QUALYS_URL", "https://bob:"+marker+"@h"),
			[]string{"QFETCH_QUALYS_URL: must not contain a user name or password; give them in their own variables"}},
		{"url bad userinfo", with("QFETCH_QUALYS_URL", "https://bob:"+marker+"%zz@h"), []string{"QFETCH_QUALYS_URL: not a valid URL (want https://host)"}},

		{"hostlist param", with("QFETCH_QUALYS_HOSTLIST_PARAMS", "ids=1-5"),
			[]string{"QFETCH_QUALYS_HOSTLIST_PARAMS: parameter ids is set by qfetch and cannot be given here"}},
		{"detection params", with("QFETCH_QUALYS_DETECTION_PARAMS", "truncation_limit=5&IDS=1&show_igs=1&vm_processed_after=x"),
			[]string{"QFETCH_QUALYS_DETECTION_PARAMS: parameters IDS, truncation_limit, vm_processed_after are set by qfetch and cannot be given here"}},
		{"params escape", with("QFETCH_QUALYS_DETECTION_PARAMS", "a=%zz"),
			[]string{`QFETCH_QUALYS_DETECTION_PARAMS: not a URL-encoded query (like a=1&b=x,y): invalid URL escape "%zz", got "a=%zz"`}},
		{"params empty name", with("QFETCH_QUALYS_HOSTLIST_PARAMS", "=1"),
			[]string{"QFETCH_QUALYS_HOSTLIST_PARAMS: has a parameter without a name"}},
		{"params unknown", with("QFETCH_QUALYS_DETECTION_PARAMS", "made_up=1&status=Fixed"),
			[]string{"QFETCH_QUALYS_DETECTION_PARAMS: parameter made_up is not a Host List Detection parameter qfetch allows"}},
		{"hostlist owned any case", with("QFETCH_QUALYS_HOSTLIST_PARAMS", "Action=purge&ag_ids=1"),
			[]string{"QFETCH_QUALYS_HOSTLIST_PARAMS: parameter Action is set by qfetch and cannot be given here"}},
		{"params allowed", with("QFETCH_QUALYS_HOSTLIST_PARAMS", "ag_ids=1,2&use_tags=1", "QFETCH_QUALYS_DETECTION_PARAMS", "status=Fixed&show_reopened_info=0"), nil},

		{"nats scheme", with("QFETCH_NATS_URL", "http://n:4222"), []string{`QFETCH_NATS_URL: URL 1 of the list has scheme "http"; want nats, tls, ws or wss`}},
		{"nats creds in url", with("QFETCH_NATS_URL", "nats://a:4222,nats://u:"+marker+"@b:4222"),
			[]string{"QFETCH_NATS_URL: URL 2 of the list carries credentials; use the creds file instead"}},
		{"nats empty item", with("QFETCH_NATS_URL", "nats://a:4222,,nats://b"), []string{"QFETCH_NATS_URL: URL 2 of the list is empty"}},
		{"nats replicas", with("QFETCH_NATS_STREAM_REPLICAS", "6"), []string{"QFETCH_NATS_STREAM_REPLICAS: must be between 1 and 5, got 6"}},
		{"nats creds file", with("QFETCH_NATS_CREDS_FILE", missing), []string{fmt.Sprintf("QFETCH_NATS_CREDS_FILE: cannot read %q: no such file or directory", missing)}},
		{"nats creds dir", with("QFETCH_NATS_CREDS_FILE", dir), []string{fmt.Sprintf("QFETCH_NATS_CREDS_FILE: %q is a directory", dir)}},

		{"s3 scheme", with("QFETCH_S3_ENDPOINT", "https://minio:9000"),
			[]string{"QFETCH_S3_ENDPOINT: must be host:port without a scheme; TLS is switched by the SECURE variable"}},
		{"s3 port", with("QFETCH_S3_ENDPOINT", "minio:99999"), []string{`QFETCH_S3_ENDPOINT: port must be 1-65535, got "99999"`}},
		{"s3 ipv6", with("QFETCH_S3_ENDPOINT", "[::1]:9000"), nil},
		{"s3 path", with("QFETCH_S3_ENDPOINT", "minio/x"), []string{"QFETCH_S3_ENDPOINT: must be host or host:port, nothing else"}},
		{"bucket name", with("QFETCH_S3_BUCKET", "My_Bucket"),
			[]string{`QFETCH_S3_BUCKET: must be 3-63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit, got "My_Bucket"`}},
		{"prefix slash", with("QFETCH_S3_PREFIX", "/qualys"),
			[]string{`QFETCH_S3_PREFIX: must be path segments joined by '/', with no leading, trailing or double '/', got "/qualys"`}},
		{"prefix dotdot", with("QFETCH_S3_PREFIX", "a/../b"), []string{`QFETCH_S3_PREFIX: must not contain ".." segments, got "a/../b"`}},
		// objstore's key rule, applied at start (#17.10).
		{"prefix hidden", with("QFETCH_S3_PREFIX", ".qualys"), []string{`QFETCH_S3_PREFIX: must not have a segment starting with "." (hidden names are the directory store's temporary files), got ".qualys"`}},
		{"prefix hidden inside", with("QFETCH_S3_PREFIX", "data/.raw"), []string{`QFETCH_S3_PREFIX: must not have a segment starting with "." (hidden names are the directory store's temporary files), got "data/.raw"`}},
		{"prefix tab", with("QFETCH_S3_PREFIX", "a\tb"), []string{`QFETCH_S3_PREFIX: must not hold a control character, got "a\tb"`}},
		{"prefix too long", with("QFETCH_S3_PREFIX", strings.Repeat("a", 769)), []string{`QFETCH_S3_PREFIX: must be at most 768 bytes, leaving room for the keys under it, got "` + strings.Repeat("a", 769) + `"`}},
		{"prefix dots inside names", with("QFETCH_S3_PREFIX", "a.b/c..d"), nil},
		{"access key alone", with("QFETCH_S3_ACCESS_KEY", "AKIA"),
			[]string{"QFETCH_S3_SECRET_KEY: required with an access key; leave both unset for IAM credentials (or set QFETCH_S3_SECRET_KEY_FILE)"}},
		{"secret key alone", with("QFETCH_S3_SECRET_KEY", marker),
			[]string{"QFETCH_S3_ACCESS_KEY: required with a secret key; leave both unset for IAM credentials (or set QFETCH_S3_ACCESS_KEY_FILE)"}},
		{"ca file", with("QFETCH_QUALYS_CA_FILE", missing), []string{fmt.Sprintf("QFETCH_QUALYS_CA_FILE: cannot read %q: no such file or directory", missing)}},

		{"password and file", with("QFETCH_QUALYS_PASSWORD_FILE", emptyFile),
			[]string{"QFETCH_QUALYS_PASSWORD: set either QFETCH_QUALYS_PASSWORD or QFETCH_QUALYS_PASSWORD_FILE, not both"}},
		{"password file missing", with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", missing),
			[]string{fmt.Sprintf("QFETCH_QUALYS_PASSWORD_FILE: cannot read %q: no such file or directory", missing)}},
		{"password file empty", with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", emptyFile),
			[]string{fmt.Sprintf("QFETCH_QUALYS_PASSWORD_FILE: %q is empty", emptyFile)}},
		{"password file only newline", with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", newlineFile),
			[]string{fmt.Sprintf("QFETCH_QUALYS_PASSWORD_FILE: %q is empty", newlineFile)}},
		{"password file huge", with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", bigFile),
			[]string{fmt.Sprintf("QFETCH_QUALYS_PASSWORD_FILE: %q is larger than 64 KiB; is it the right file?", bigFile)}},
		{"secret key file missing", with("QFETCH_S3_ACCESS_KEY", "AKIA", "QFETCH_S3_SECRET_KEY_FILE", missing),
			[]string{fmt.Sprintf("QFETCH_S3_SECRET_KEY_FILE: cannot read %q: no such file or directory", missing)}},

		{"all problems at once", with("QFETCH_BATCH_SIZE", "0", "QFETCH_MAX_IN_FLIGHT", "x", "QFETCH_QUALYS_URL", "ftp://h",
			"QFETCH_S3_BUCKET", "", "QFETCH_LOG_LEVEL", "loud"), []string{
			`QFETCH_BATCH_SIZE: must be between 1 and 10000, got 0`,
			`QFETCH_LOG_LEVEL: must be debug, info, warn or error, got "loud"`,
			`QFETCH_MAX_IN_FLIGHT: not an integer, got "x"`,
			`QFETCH_QUALYS_URL: must start with https:// or http://, got scheme "ftp"`,
			`QFETCH_S3_BUCKET: required`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			err := Load(Prefix, &testSpec{})
			if got := errLines(err); !slices.Equal(got, tt.want) {
				t.Fatalf("errors:\n got %q\nwant %q", got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), marker) {
				t.Fatalf("error shows the secret: %v", err)
			}
			for _, e := range flatten(err) {
				var ve *VarError
				if !errors.As(e, &ve) {
					t.Errorf("%v is not a *VarError", e)
				}
			}
		})
	}
}

func TestLoadSecretFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ content, want string }{
		// Passwords of eight characters or more: shorter ones are refused
		// (#17.8, TestLoadShortSecret).
		{"pw-12345", "pw-12345"},
		{"pw-12345\n", "pw-12345"},
		{"pw-12345\r\n", "pw-12345"},
		{"pw-12345\n\n", "pw-12345\n"}, // only one newline goes
		{"pw-12345\r\n\r\n", "pw-12345\r\n"},
		{" pw-12345 \t", " pw-12345 \t"},
		{"line1\nline2\n", "line1\nline2"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.content), func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprint(i))
			ak := filepath.Join(dir, fmt.Sprint(i, "ak"))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(ak, []byte("AKIA\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			setEnv(t, with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", p,
				"QFETCH_S3_ACCESS_KEY_FILE", ak, "QFETCH_S3_SECRET_KEY_FILE", p))
			var s testSpec
			if err := Load(Prefix, &s); err != nil {
				t.Fatal(err)
			}
			if s.Qualys.Password.Reveal() != tt.want || s.S3.SecretKey.Reveal() != tt.want || s.S3.AccessKey.Reveal() != "AKIA" {
				t.Fatalf("password %q, secret key %q, access key %q; want %q", s.Qualys.Password.Reveal(),
					s.S3.SecretKey.Reveal(), s.S3.AccessKey.Reveal(), tt.want)
			}
		})
	}
}

// No path out of Load or Validate carries a secret: not the error, not the
// error or the loaded spec logged through any handler.
func TestLoadNeverShowsSecrets(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env map[string]string
		// errOnly: the env is invalid in a way only Validate can see (a
		// scheme-less endpoint with userinfo); the spec left behind holds
		// the raw string, so only the error is checked.
		errOnly bool
	}{
		{env: validEnv()},
		{env: with("QFETCH_QUALYS_URL", "https://bob:"+marker+"@h")},
		{env: with("QFETCH_QUALYS_URL", "https://bob:"+marker+"%zz@h")},
		{env: with("QFETCH_QUALYS_URL", "ftp://bob:"+marker+"@h")},
		{env: with("QFETCH_QUALYS_URL", "https://"+marker+"@h/x")},
		{env: with("QFETCH_QUALYS_PASSWORD_FILE", pwFile)},
		{env: with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", pwFile, "QFETCH_BATCH_SIZE", "0")},
		{env: with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", pwFile)},
		{env: with("QFETCH_S3_SECRET_KEY", marker)},
		{env: with("QFETCH_S3_SECRET_KEY_FILE", pwFile, "QFETCH_S3_SECRET_KEY", marker)},
		{env: with("QFETCH_S3_ACCESS_KEY", marker, "QFETCH_S3_SECRET_KEY_FILE", pwFile)},
		{env: with("QFETCH_S3_ENDPOINT", "https://ak:"+marker+"@minio:9000")},
		{env: with("QFETCH_S3_ENDPOINT", "ak:"+marker+"@minio:9000"), errOnly: true},
		{env: with("QFETCH_NATS_URL", "nats://u:"+marker+"@n:4222")},
		{env: with("QFETCH_BATCH_SIZE", "https://u:"+marker+"@h")},
		{env: with("QFETCH_QUALYS_HOSTLIST_PARAMS", "x=https://u:"+marker+"@h%zz")},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			setEnv(t, tt.env)
			var s testSpec
			err := Load(Prefix, &s)
			outs := map[string]string{}
			if err != nil {
				outs["error"] = err.Error()
				outs["error %+v"] = fmt.Sprintf("%+v", err)
			} else {
				// Only Secret fields hold secrets in a valid spec.
				outs["spec %+v"] = fmt.Sprintf("%+v", s)
				outs["spec %#v"] = fmt.Sprintf("%#v", s)
			}
			for _, format := range []string{"json", "text"} {
				var buf bytes.Buffer
				l, lerr := logging.New(&buf, format, "debug", false)
				if lerr != nil {
					t.Fatal(lerr)
				}
				if tt.errOnly {
					l.Error("config", "err", err)
				} else {
					l.Error("config", "err", err, "spec", s, "qualys", s.Qualys, "s3", &s.S3)
				}
				outs["log "+format] = buf.String()
			}
			for where, out := range outs {
				if strings.Contains(out, marker) {
					t.Errorf("%s shows the secret: %s", where, out)
				}
			}
		})
	}
}

type customSpec struct {
	Qualys Qualys
	Extra  int `envconfig:"EXTRA" default:"1"`
	Fleet
}

func (c customSpec) Validate() error {
	return errors.Join(
		&FieldError{Field: "Extra", Err: errors.New("must be even")},
		&FieldError{Field: "Qualys.Username", Err: errors.New("is not allowed here")},
		&FieldError{Field: "Qualys.URL", Err: errors.New("already reported, dropped")},
		&FieldError{Field: "BatchSize", Err: errors.New("promoted field")},
		errors.New("a rule across sections"),
	)
}

// Validate on the top-level spec names Go fields; Load turns them into
// variables and keeps one complaint per variable.
func TestLoadValidateMapping(t *testing.T) {
	setEnv(t, with("QFETCH_QUALYS_URL", ""))
	err := Load(Prefix, &customSpec{})
	want := []string{
		"QFETCH_BATCH_SIZE: promoted field",
		"QFETCH_EXTRA: must be even",
		"QFETCH_QUALYS_URL: required",
		"QFETCH_QUALYS_USERNAME: is not allowed here",
		"a rule across sections",
	}
	if got := errLines(err); !slices.Equal(got, want) {
		t.Fatalf("errors:\n got %q\nwant %q", got, want)
	}
}

func TestLoadRejectsBadSpec(t *testing.T) {
	for _, spec := range []any{testSpec{}, (*testSpec)(nil), new(int), nil} {
		if err := Load(Prefix, spec); err == nil {
			t.Errorf("Load(%T) accepted", spec)
		}
	}
	type weird struct {
		C chan int `envconfig:"C"`
	}
	setEnv(t, map[string]string{"QFETCH_C": "1"})
	if err := Load(Prefix, &weird{}); err == nil || !strings.Contains(err.Error(), "QFETCH_C: config: field type chan int is not supported") {
		t.Errorf("unsupported type: %v", err)
	}
}

func TestUnknown(t *testing.T) {
	setEnv(t, with("QFETCH_QUALYS_PASWORD", "typo", "QFETCH_QUALYS_PASSWORD_FILE", "/x", "QFETCH_BATCHSIZE", "5",
		"QFETCH_EMPTY", "", "OTHER_VAR", "1"))
	got, err := Unknown(Prefix, &testSpec{})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"QFETCH_BATCHSIZE", "QFETCH_QUALYS_PASWORD"}; !slices.Equal(got, want) {
		t.Fatalf("Unknown = %q, want %q", got, want)
	}
}

func TestParamsCheck(t *testing.T) {
	for _, k := range qparams.OwnedNames() {
		for _, name := range []string{k, strings.ToUpper(k)} {
			if err := (Params{name: {"1"}}).checkDetection(); err == nil {
				t.Errorf("%s accepted for detections", name)
			}
			if err := (Params{name: {"1"}}).checkHostList(); err == nil {
				t.Errorf("%s accepted for the Host List", name)
			}
		}
	}
	// Only the names each API's allowlist holds.
	if err := (Params{"made_up": {"1"}}).checkDetection(); err == nil {
		t.Error("made_up accepted for detections")
	}
	if err := (Params{"status": {"New"}}).checkHostList(); err == nil {
		t.Error("status accepted for the Host List, which has no such filter")
	}
	p := Params{"status": {"New"}}
	v := p.Values()
	v.Set("status", "Fixed")
	if p["status"][0] != "New" {
		t.Error("Values is not a copy")
	}
}

func FuzzParams(f *testing.F) {
	for _, s := range []string{"a=1&b=2", "status=New,Active", "%zz", "=1", "ids=1;x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p Params
		if err := p.UnmarshalText([]byte(s)); err != nil {
			return
		}
		// What parses round-trips, and check agrees with a direct look.
		var q Params
		if err := q.UnmarshalText([]byte(p.String())); err != nil || !reflect.DeepEqual(p.Values(), q.Values()) && len(p) > 0 {
			t.Fatalf("%q → %q → %v (%v)", s, p.String(), q, err)
		}
		// check refuses exactly the empty, owned (any case) and unlisted names.
		err := p.checkDetection()
		reserved := false
		allowed := qparams.Allowed(qparams.Detection)
		for k := range p {
			reserved = reserved || k == "" || qparams.Owned(k) || !slices.Contains(allowed, k)
		}
		if (err != nil) != reserved {
			t.Fatalf("check(%v) = %v", p, err)
		}
	})
}
