package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unsetenv removes variables for the duration of the test; t.Setenv records
// the previous state so the cleanup restores it.
func unsetenv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "")
		if err := os.Unsetenv(k); err != nil {
			t.Fatalf("unsetenv %s: %v", k, err)
		}
	}
}

// secretsDir points SECRETS_DIR at a fresh directory holding files.
func secretsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func problemLines(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(l, "  - ") {
			out = append(out, strings.TrimPrefix(l, "  - "))
		}
	}
	return out
}

type defaultsSpec struct {
	Port     int      `envconfig:"PORT" default:"8080"`
	LogLevel string   `envconfig:"LOG_LEVEL" default:"info"`
	Timeout  Duration `envconfig:"TIMEOUT" default:"10"`
	Ratio    float64  `envconfig:"RATIO" default:"0.5"`
	Enabled  bool     `envconfig:"ENABLED" default:"true"`
	Hosts    []string `envconfig:"HOSTS" default:"a,b"`
	Region   string   // no tag: the variable is REGION
}

var defaultsKeys = []string{"PORT", "LOG_LEVEL", "TIMEOUT", "RATIO", "ENABLED", "HOSTS", "REGION"}

func TestLoadAppliesDefaultsWhenVariablesAreUnset(t *testing.T) {
	unsetenv(t, defaultsKeys...)
	var s defaultsSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Port != 8080 || s.LogLevel != "info" || s.Timeout.D() != 10*time.Second ||
		s.Ratio != 0.5 || !s.Enabled || strings.Join(s.Hosts, "|") != "a|b" || s.Region != "" {
		t.Fatalf("Load filled %+v, want the tag defaults", s)
	}
}

func TestLoadPrefersVariablesOverDefaults(t *testing.T) {
	unsetenv(t, defaultsKeys...)
	t.Setenv("PORT", "9090")
	t.Setenv("LOG_LEVEL", "debug")
	t.Setenv("TIMEOUT", "1m30s")
	t.Setenv("RATIO", "0.25")
	t.Setenv("ENABLED", "false")
	t.Setenv("HOSTS", "x,y,z")
	t.Setenv("REGION", "eu-west-1")
	var s defaultsSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := defaultsSpec{Port: 9090, LogLevel: "debug", Timeout: Duration(90 * time.Second), Ratio: 0.25,
		Enabled: false, Hosts: []string{"x", "y", "z"}, Region: "eu-west-1"}
	if s.Port != want.Port || s.LogLevel != want.LogLevel || s.Timeout != want.Timeout || s.Ratio != want.Ratio ||
		s.Enabled != want.Enabled || strings.Join(s.Hosts, "|") != "x|y|z" || s.Region != want.Region {
		t.Fatalf("Load filled %+v, want %+v", s, want)
	}
}

type requiredSpec struct {
	DatabaseURL string `envconfig:"DATABASE_URL" required:"true"`
	Port        int    `envconfig:"PORT" default:"8080"`
}

func TestLoadNamesAMissingRequiredVariable(t *testing.T) {
	unsetenv(t, "DATABASE_URL", "PORT")
	var s requiredSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load succeeded without the required DATABASE_URL")
	}
	lines := problemLines(err)
	if len(lines) != 1 || lines[0] != "DATABASE_URL: required but not set" {
		t.Fatalf("Load error = %q, want one problem naming DATABASE_URL", err)
	}
}

func TestLoadSucceedsWhenTheRequiredVariableIsSet(t *testing.T) {
	unsetenv(t, "DATABASE_URL", "PORT")
	t.Setenv("DATABASE_URL", "postgres://billfn@db/billfn")
	var s requiredSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.DatabaseURL != "postgres://billfn@db/billfn" || s.Port != 8080 {
		t.Fatalf("Load filled %+v", s)
	}
}

type manyProblemsSpec struct {
	DatabaseURL string   `envconfig:"DATABASE_URL" required:"true"`
	KafkaBroker string   `envconfig:"KAFKA_BROKERS" required:"true"`
	Port        int      `envconfig:"PORT" default:"8080"`
	Timeout     Duration `envconfig:"TIMEOUT" default:"10s"`
	Name        string   `envconfig:"APP_NAME" required:"true"`
}

func TestLoadReportsEveryBadFieldInOneError(t *testing.T) {
	unsetenv(t, "DATABASE_URL", "KAFKA_BROKERS", "PORT", "TIMEOUT", "APP_NAME")
	t.Setenv("PORT", "eighty")
	t.Setenv("TIMEOUT", "ten")
	t.Setenv("APP_NAME", "invoices")
	var s manyProblemsSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load succeeded with two missing and two invalid variables")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "configuration is invalid:") {
		t.Fatalf("Load error = %q, want it to start with a summary", msg)
	}
	want := []string{
		"DATABASE_URL: required but not set",
		"KAFKA_BROKERS: required but not set",
		`PORT: invalid value "eighty"`,
		`TIMEOUT: invalid value "ten"`,
	}
	lines := problemLines(err)
	if len(lines) != len(want) {
		t.Fatalf("Load reported %d problems, want %d:\n%s", len(lines), len(want), msg)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("problem %d = %q, want it to start with %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[3], "not a duration") {
		t.Fatalf("the TIMEOUT problem %q should say why the value is wrong", lines[3])
	}
	// The good field is still filled, so a caller logging cfg sees what it can.
	if s.Name != "invoices" {
		t.Fatalf("APP_NAME = %q, want the valid field loaded despite the others", s.Name)
	}
}

type secretSpec struct {
	Password string `envconfig:"DB_PASSWORD" secret:"db-password" required:"true"`
	Pool     int    `envconfig:"DB_POOL" secret:"db-pool" default:"4"`
}

func TestLoadReadsSecretFileTrimmedAndOverEnv(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	secretsDir(t, map[string]string{"db-password": "s3cr3t\n", "db-pool": "  16\n\n"})
	t.Setenv("DB_PASSWORD", "from-env")
	var s secretSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Password != "s3cr3t" {
		t.Fatalf("Password = %q, want the secret file's content without the newline", s.Password)
	}
	if s.Pool != 16 {
		t.Fatalf("Pool = %d, want 16 decoded from the secret file", s.Pool)
	}
}

func TestLoadFallsBackToEnvWhenSecretFileIsAbsent(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	secretsDir(t, nil)
	t.Setenv("DB_PASSWORD", "from-env")
	var s secretSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Password != "from-env" || s.Pool != 4 {
		t.Fatalf("Load filled %+v, want the env value and the default", s)
	}
}

func TestLoadNamesBothPlacesOfAMissingSecret(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	dir := secretsDir(t, nil)
	var s secretSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load succeeded without the required secret")
	}
	want := "DB_PASSWORD (or secret file " + filepath.Join(dir, "db-password") + "): required but not set"
	if lines := problemLines(err); len(lines) != 1 || lines[0] != want {
		t.Fatalf("Load error = %q, want the single problem %q", err, want)
	}
}

func TestLoadReportsAnInvalidSecretFile(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	secretsDir(t, map[string]string{"db-password": "x", "db-pool": "many\n"})
	var s secretSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load succeeded with a non-integer pool size")
	}
	lines := problemLines(err)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "DB_POOL (or secret file ") || !strings.Contains(lines[0], `invalid value "many"`) {
		t.Fatalf("Load error = %q, want one problem naming DB_POOL, its file and the value", err)
	}
}

func TestLoadReportsAnUnreadableSecretFile(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	dir := secretsDir(t, map[string]string{"db-pool": "8"})
	// A directory where the file should be: reading fails with something
	// other than "does not exist", which must not fall back to the env.
	if err := os.Mkdir(filepath.Join(dir, "db-password"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DB_PASSWORD", "from-env")
	var s secretSpec
	err := Load(&s)
	if err == nil {
		t.Fatalf("Load succeeded (Password %q) though the secret file cannot be read", s.Password)
	}
	if lines := problemLines(err); len(lines) != 1 || !strings.HasPrefix(lines[0], "secret db-password: ") {
		t.Fatalf("Load error = %q, want one problem naming the secret", err)
	}
}

func TestSecretReadsFileThenEnv(t *testing.T) {
	unsetenv(t, "API_KEY")
	dir := secretsDir(t, nil)

	if v, ok, err := Secret("api-key", "API_KEY"); err != nil || ok || v != "" {
		t.Fatalf("Secret with neither file nor env = %q, %v, %v; want \"\", false, nil", v, ok, err)
	}
	t.Setenv("API_KEY", "env-key")
	if v, ok, err := Secret("api-key", "API_KEY"); err != nil || !ok || v != "env-key" {
		t.Fatalf("Secret with env only = %q, %v, %v; want env-key", v, ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "api-key"), []byte("\tfile-key \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := Secret("api-key", "API_KEY"); err != nil || !ok || v != "file-key" {
		t.Fatalf("Secret with file and env = %q, %v, %v; want file-key", v, ok, err)
	}
}

func TestSecretsDirDefaultsToTheOpenFaaSMount(t *testing.T) {
	unsetenv(t, SecretsDirEnv)
	if got := SecretsDir(); got != "/var/openfaas/secrets" {
		t.Fatalf("SecretsDir() = %q, want /var/openfaas/secrets", got)
	}
	t.Setenv(SecretsDirEnv, "/run/secrets")
	if got := SecretsDir(); got != "/run/secrets" {
		t.Fatalf("SecretsDir() = %q, want /run/secrets", got)
	}
}

func TestDurationAcceptsGoDurationsAndBareSeconds(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"10s", 10 * time.Second},
		{"1m30s", 90 * time.Second},
		{"10", 10 * time.Second},
		{"0", 0},
		{"250ms", 250 * time.Millisecond},
		{"2h", 2 * time.Hour},
	}
	for _, tt := range tests {
		var d Duration
		if err := d.Decode(tt.in); err != nil {
			t.Fatalf("Decode(%q): %v", tt.in, err)
		}
		if d.D() != tt.want {
			t.Fatalf("Decode(%q) = %v, want %v", tt.in, d.D(), tt.want)
		}
	}
}

func TestDurationRejectsWhatIsNotADuration(t *testing.T) {
	for _, in := range []string{"ten", "", "1.5", "10 s", "s", "1m30"} {
		d := Duration(time.Minute)
		if err := d.Decode(in); err == nil {
			t.Fatalf("Decode(%q) = %v, want an error", in, d.D())
		}
		if d != Duration(time.Minute) {
			t.Fatalf("Decode(%q) failed but changed the value to %v", in, d.D())
		}
	}
}

type dbSpec struct {
	URL      string `envconfig:"DB_URL" required:"true"`
	MaxConns int    `envconfig:"DB_MAX_CONNS" default:"4"`
}

type nestedSpec struct {
	Name  string `envconfig:"APP_NAME" default:"billfn"`
	DB    dbSpec // no tag: its fields are read with their own names, no prefix
	Cache struct {
		TTL Duration `envconfig:"CACHE_TTL" default:"30s"`
	}
}

func TestLoadFillsNestedStructsRecursively(t *testing.T) {
	unsetenv(t, "APP_NAME", "DB_URL", "DB_MAX_CONNS", "CACHE_TTL", "DB", "CACHE")
	t.Setenv("DB_URL", "postgres://db/billfn")
	t.Setenv("CACHE_TTL", "5")
	var s nestedSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Name != "billfn" || s.DB.URL != "postgres://db/billfn" || s.DB.MaxConns != 4 || s.Cache.TTL.D() != 5*time.Second {
		t.Fatalf("Load filled %+v", s)
	}
}

func TestLoadReportsProblemsInsideNestedStructs(t *testing.T) {
	unsetenv(t, "APP_NAME", "DB_URL", "DB_MAX_CONNS", "CACHE_TTL", "DB", "CACHE")
	t.Setenv("DB_MAX_CONNS", "lots")
	t.Setenv("CACHE_TTL", "forever")
	var s nestedSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load succeeded with invalid nested fields")
	}
	lines := problemLines(err)
	want := []string{"DB_URL: required but not set", `DB_MAX_CONNS: invalid value "lots"`, `CACHE_TTL: invalid value "forever"`}
	if len(lines) != len(want) {
		t.Fatalf("Load reported %q, want %d problems", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

type skipSpec struct {
	Kept     string `envconfig:"KEPT"`
	Skip     string `envconfig:"SKIP" ignored:"true"`
	internal string
}

func TestLoadLeavesIgnoredAndUnexportedFieldsAlone(t *testing.T) {
	unsetenv(t, "KEPT", "SKIP", "INTERNAL")
	t.Setenv("KEPT", "k")
	t.Setenv("SKIP", "from-env")
	t.Setenv("INTERNAL", "from-env")
	s := skipSpec{Skip: "preset", internal: "preset"}
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Kept != "k" || s.Skip != "preset" || s.internal != "preset" {
		t.Fatalf("Load filled %+v, want only Kept changed", s)
	}
}

func TestLoadRejectsAnythingButAPointerToAStruct(t *testing.T) {
	n := 3
	for _, spec := range []any{nil, defaultsSpec{}, &n, "PORT"} {
		if err := Load(spec); err == nil || !strings.Contains(err.Error(), "pointer to a struct") {
			t.Fatalf("Load(%T) error = %v, want a pointer-to-struct error", spec, err)
		}
	}
}

// The OpenFaaS watchdog names its variables in lower case (read_timeout);
// a lower-case tag must read exactly that variable.
type watchdogSpec struct {
	ReadTimeout Duration `envconfig:"read_timeout" default:"10s"`
	MaxInflight int      `envconfig:"max_inflight" default:"0"`
}

func TestLoadReadsALowerCaseTagAsWritten(t *testing.T) {
	unsetenv(t, "read_timeout", "READ_TIMEOUT", "max_inflight", "MAX_INFLIGHT")
	t.Setenv("read_timeout", "30")
	t.Setenv("max_inflight", "64")
	var s watchdogSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.ReadTimeout.D() != 30*time.Second || s.MaxInflight != 64 {
		t.Fatalf("Load filled %+v, want read_timeout=30s and max_inflight=64", s)
	}
}

func TestLoadFallsBackToTheUpperCaseNameOfALowerCaseTag(t *testing.T) {
	unsetenv(t, "read_timeout", "READ_TIMEOUT", "max_inflight", "MAX_INFLIGHT")
	t.Setenv("READ_TIMEOUT", "20s")
	t.Setenv("max_inflight", "8")
	t.Setenv("MAX_INFLIGHT", "9")
	var s watchdogSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.ReadTimeout.D() != 20*time.Second {
		t.Fatalf("ReadTimeout = %v, want 20s from READ_TIMEOUT", s.ReadTimeout.D())
	}
	if s.MaxInflight != 8 {
		t.Fatalf("MaxInflight = %d, want 8: the name as written wins over its upper-case form", s.MaxInflight)
	}
}

func TestLoadNamesALowerCaseVariableAsWritten(t *testing.T) {
	unsetenv(t, "read_timeout", "READ_TIMEOUT", "max_inflight", "MAX_INFLIGHT")
	t.Setenv("read_timeout", "soon")
	var s watchdogSpec
	err := Load(&s)
	if err == nil {
		t.Fatal("Load accepted read_timeout=soon")
	}
	if lines := problemLines(err); len(lines) != 1 || !strings.HasPrefix(lines[0], `read_timeout: invalid value "soon"`) {
		t.Fatalf("Load error = %q, want one problem naming read_timeout", err)
	}
}

// A struct type that decodes itself from one string (time.Time is a
// TextUnmarshaler) is one variable, not a group of nested fields.
type sinceSpec struct {
	Since time.Time
}

func TestLoadDecodesATextUnmarshalerStructFromOneVariable(t *testing.T) {
	unsetenv(t, "SINCE")
	t.Setenv("SINCE", "2024-01-02T03:04:05Z")
	var s sinceSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC); !s.Since.Equal(want) {
		t.Fatalf("Since = %v, want %v", s.Since, want)
	}
	t.Setenv("SINCE", "yesterday")
	err := Load(&s)
	if err == nil || !strings.Contains(err.Error(), `SINCE: invalid value "yesterday"`) {
		t.Fatalf("Load error = %v, want SINCE named as invalid", err)
	}
}

// Issue 15, item 3: a secret read from a file stays in the struct; it is
// never copied into the process environment, where /proc/<pid>/environ and
// every child process would see it.
func TestLoadKeepsFileSecretsOutOfTheEnvironment(t *testing.T) {
	unsetenv(t, "DB_PASSWORD", "DB_POOL")
	secretsDir(t, map[string]string{"db-password": "file-only-s3cr3t\n", "db-pool": "16"})
	var s secretSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Password != "file-only-s3cr3t" || s.Pool != 16 {
		t.Fatalf("Load filled %+v, want the secret files' values", s)
	}
	for _, k := range []string{"DB_PASSWORD", "DB_POOL"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("after Load, %s is in the environment (%q)", k, v)
		}
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatalf("env: %v", err)
	}
	if strings.Contains(string(out), "file-only-s3cr3t") {
		t.Fatal("a child process sees the secret in its environment")
	}
}

// A lower-case variable (the watchdog's read_timeout) is read as written and
// not copied to its upper-case name either.
func TestLoadDoesNotCopyALowerCaseVariableToItsUpperCaseName(t *testing.T) {
	unsetenv(t, "READ_TIMEOUT", "MAX_INFLIGHT", "read_timeout", "max_inflight")
	t.Setenv("read_timeout", "30")
	var s watchdogSpec
	if err := Load(&s); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.ReadTimeout.D() != 30*time.Second {
		t.Fatalf("ReadTimeout = %v, want 30s", s.ReadTimeout.D())
	}
	if v, ok := os.LookupEnv("READ_TIMEOUT"); ok {
		t.Fatalf("after Load, READ_TIMEOUT is in the environment (%q)", v)
	}
}
