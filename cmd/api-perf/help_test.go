package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README's configuration table from the settings table")

// badEnv has a wrong value for several variables; help and version must
// answer regardless.
var badEnv = env(map[string]string{"CACHE_TTL": "soon", "REDIS_URL": "localhost", "LOG_LEVEL": "loud"})

// runOut runs the program with args and returns what it wrote to stdout.
func runOut(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, getenv, &stdout, &stderr, nil)
	if stderr.Len() > 0 {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

func TestRun_Help(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, err := runOut(t, badEnv, args...)
			if err != nil {
				t.Fatalf("%v with a bad environment: %v", args, err)
			}
			for _, c := range commands() {
				// The summary follows the synopsis, or the next line when
				// the synopsis is too long for the column.
				if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(strings.TrimSpace(c.Name+" "+c.Args)) + `(  +|\n {4,})\S`).MatchString(out) {
					t.Errorf("help does not list command %s:\n%s", c.Name, out)
				}
			}
			_, table, _ := strings.Cut(out, "\nCommands:\n")
			table, _, _ = strings.Cut(table, "\n\n")
			for _, line := range strings.Split(table, "\n") {
				if len(line) > 80 && !strings.HasPrefix(line, "  migrate [") {
					t.Errorf("command table line wider than 80 columns: %q", line)
				}
			}
			if got := helpSettings(t, out); len(got) != len(settings) {
				t.Errorf("help lists %d variables, the table has %d", len(got), len(settings))
			}
		})
	}
	t.Run("Command", func(t *testing.T) {
		for _, args := range [][]string{{"help", "migrate"}, {"migrate", "--help"}, {"migrate", "-h"}} {
			out, err := runOut(t, badEnv, args...)
			if err != nil || !strings.HasPrefix(out, "Usage: api-perf migrate [status|up|down N|force V]\n") {
				t.Errorf("%v: %v\n%s", args, err, out)
			}
		}
		if _, err := runOut(t, badEnv, "help", "bogus"); err == nil || !strings.Contains(err.Error(), `unknown command "bogus"`) {
			t.Errorf("help bogus: %v", err)
		}
	})
	t.Run("ConfigStillChecked", func(t *testing.T) {
		_, err := runOut(t, badEnv, "migrate")
		if err == nil || !strings.Contains(err.Error(), "CACHE_TTL:") || !strings.Contains(err.Error(), "REDIS_URL:") {
			t.Fatalf("migrate with a bad environment: %v", err)
		}
		if _, err := runOut(t, env(nil), "version", "extra"); err == nil || !strings.Contains(err.Error(), "takes no arguments") {
			t.Fatalf("version extra: %v", err)
		}
	})
}

func TestRun_Version(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-version"} {
		out, err := runOut(t, badEnv, arg)
		if err != nil {
			t.Fatalf("%s with a bad environment: %v", arg, err)
		}
		want := regexp.MustCompile(`^api-perf \S+\n  revision:   \S+.*\n  build time: \S+\n  go:         ` +
			regexp.QuoteMeta(runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH) + `\n$`)
		if !want.MatchString(out) {
			t.Fatalf("%s printed:\n%s", arg, out)
		}
	}
	// The link-time variables win over what the toolchain recorded.
	defer func(v, r, b string) { version, revision, buildTime = v, r, b }(version, revision, buildTime)
	version, revision, buildTime = "v1.2.3", "0123abcd", "2026-01-02T03:04:05Z"
	out, err := runOut(t, env(nil), "version")
	if err != nil || !strings.HasPrefix(out, "api-perf v1.2.3\n  revision:   0123abcd") || !strings.Contains(out, "build time: 2026-01-02T03:04:05Z\n") {
		t.Fatalf("stamped version:\n%s %v", out, err)
	}
}

// helpSettings reads the NAME=default lines of the help's environment
// section.
func helpSettings(t *testing.T, help string) map[string]string {
	t.Helper()
	_, section, ok := strings.Cut(help, "\nEnvironment")
	if !ok {
		t.Fatalf("help has no Environment section:\n%s", help)
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  ([A-Z][A-Z0-9_]*)=(.*)$`).FindAllStringSubmatch(section, -1) {
		if _, dup := got[m[1]]; dup {
			t.Errorf("help lists %s twice", m[1])
		}
		got[m[1]] = m[2]
	}
	return got
}

// envExampleSettings reads the uncommented NAME=value lines of .env.example.
func envExampleSettings(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	line := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil {
			if _, dup := got[m[1]]; dup {
				t.Errorf(".env.example sets %s twice", m[1])
			}
			got[m[1]] = m[2]
		}
	}
	return got
}

// readmeTable renders README's configuration table from the settings.
func readmeTable() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range settings {
		def := "empty"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, strings.ReplaceAll(s.Meaning, "|", `\|`))
	}
	return b.String()
}

// The configuration table sits between these lines of README.md.
const (
	tableBegin = "<!-- configuration table: go test ./cmd/api-perf -run TestConfigDocs -update rewrites it -->\n"
	tableEnd   = "<!-- end of configuration table -->\n"
)

// TestConfigDocs holds README's configuration table, .env.example and
// --help to the settings table loadConfig parses: every variable in each,
// with the same default. README's table is generated (-update rewrites it).
func TestConfigDocs(t *testing.T) {
	want := map[string]string{}
	for _, s := range settings {
		want[s.Name] = s.Default
	}
	compare := func(where string, got map[string]string) {
		t.Helper()
		for name, def := range want {
			if g, ok := got[name]; !ok {
				t.Errorf("%s does not list %s", where, name)
			} else if g != def {
				t.Errorf("%s: %s=%q, but its default is %q", where, name, g, def)
			}
		}
		for name := range got {
			if _, ok := want[name]; !ok {
				t.Errorf("%s lists %s, which the configuration does not read", where, name)
			}
		}
	}

	help, err := runOut(t, env(nil), "--help")
	if err != nil {
		t.Fatal(err)
	}
	compare("--help", helpSettings(t, help))
	compare(".env.example", envExampleSettings(t))

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(readme), tableBegin)
	table, after, ok2 := strings.Cut(rest, tableEnd)
	if !ok1 || !ok2 {
		t.Fatalf("README.md lacks the lines around its configuration table:\n%s%s", tableBegin, tableEnd)
	}
	if *update {
		if err := os.WriteFile("../../README.md", []byte(before+tableBegin+readmeTable()+tableEnd+after), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if table != readmeTable() {
		t.Errorf("README.md's configuration table is not the settings table; run go test ./cmd/api-perf -run TestConfigDocs -update\ngot:\n%s\nwant:\n%s", table, readmeTable())
	}
	// The generated table is trusted only as far as the parse below agrees.
	got := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)` \\| (?:`([^`]*)`|empty) \\|").FindAllStringSubmatch(table, -1) {
		got[m[1]] = m[2]
	}
	compare("README.md", got)
}

// TestSettings_EveryDefaultParses: each default is a valid value, so an
// empty environment starts, and each setting has a meaning to show.
func TestSettings_EveryDefaultParses(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range settings {
		var c config
		if err := s.parse(&c, s.Default); err != nil {
			t.Errorf("%s: default %q: %v", s.Name, s.Default, err)
		}
		if seen[s.Name] {
			t.Errorf("%s is in the table twice", s.Name)
		}
		seen[s.Name] = true
		if !strings.HasSuffix(s.Meaning, ".") || len(s.Meaning) < 10 {
			t.Errorf("%s: meaning %q is not a sentence", s.Name, s.Meaning)
		}
	}
}
