package main

import (
	"fmt"
	"io"
	"strings"
)

// command is one subcommand. Commands that need the configuration get it
// loaded and validated; help and version do not, so they answer even when
// the environment is wrong.
type command struct {
	Name string
	// Args is the usage of the command's arguments ("" when it takes
	// none), shown after its name, e.g. "status|up|down N".
	Args string
	// Summary is one line for the command list; Details, when set, is
	// printed by `api-perf help NAME`.
	Summary string
	Details string
	// NeedsConfig loads the configuration (and fails on a bad variable)
	// before run is called.
	NeedsConfig bool
	run         func(p *program, args []string) error
}

// commands lists every subcommand, in the order help shows them. It is a
// function so that the run functions may refer to the help they print.
func commands() []command {
	return []command{
		{Name: "serve", NeedsConfig: true,
			Summary: "serve HTTP, or Lambda events when AWS_LAMBDA_RUNTIME_API is set (the default)",
			Details: "Serves the API on HTTP_ADDR (and /metrics on METRICS_ADDR when set) until SIGTERM or\n" +
				"SIGINT, then drains in-flight requests for up to SHUTDOWN_TIMEOUT. Migrations are applied\n" +
				"at start-up under a database lock. Inside AWS Lambda (AWS_LAMBDA_RUNTIME_API set) it serves\n" +
				"the function's HTTP events with the same handlers instead.",
			run: (*program).serve},
		{Name: "migrate", Args: migrateUsage, NeedsConfig: true,
			Summary: "apply the pending database migrations and exit (up, the default), show their status, undo the last N, or force a version",
			Details: "up, or no argument: applies the pending migrations. A database last migrated by a release\n" +
				"before golang-migrate is taken over at the version it recorded, without running anything\n" +
				"again. Start-up migrates the same way, under the same lock, so replicas starting together\n" +
				"apply each migration once.\n\n" +
				"status: prints the schema's version, whether it is dirty and the pending migrations; exits 1\n" +
				"when the schema is dirty. It changes nothing and waits for no lock.\n\n" +
				"down N: undoes the last N migrations, newest first. What an undo cannot keep (the rows of a\n" +
				"dropped table, the values of a dropped column) is lost; each .down.sql file says what.\n\n" +
				"force V: records version V (0 for none) as applied and clean without running anything: the\n" +
				"way out of a dirty state, once the schema was checked and repaired by hand to match V.\n" +
				"docs/migrations.md explains the states and the recovery.",
			run: (*program).migrate},
		{Name: "healthcheck", NeedsConfig: true,
			Summary: "exit 0 when the local server's /healthz answers 200 (container probes)",
			Details: "Sends GET http://127.0.0.1:<port of HTTP_ADDR>/healthz with a 3 s timeout and exits 0 on\n" +
				"a 200, 1 otherwise. Distroless images have no curl; the binary is its own probe.",
			run: (*program).healthcheck},
		{Name: "version", Summary: "print the version, revision, build time and Go version",
			run: func(p *program, _ []string) error { return printVersion(p.stdout, buildVersion()) }},
		{Name: "help", Args: "[command]", Summary: "print this help, or a command's",
			run: func(p *program, args []string) error {
				if len(args) == 0 {
					return printHelp(p.stdout)
				}
				c, ok := findCommand(args[0])
				if !ok {
					return fmt.Errorf("unknown command %q (see api-perf help)", args[0])
				}
				return printCommandHelp(p.stdout, c)
			}},
	}
}

// findCommand resolves a command name, including the spellings of help
// and version that people type from habit.
func findCommand(name string) (command, bool) {
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.Name == name {
			return c, true
		}
	}
	return command{}, false
}

func isHelpFlag(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// usage is a command's synopsis line.
func (c command) usage() string {
	if c.Args == "" {
		return "api-perf " + c.Name
	}
	return "api-perf " + c.Name + " " + c.Args
}

// printHelp writes `api-perf --help`: the commands, then every
// environment variable from the settings table with its default.
func printHelp(w io.Writer) error {
	var b strings.Builder
	b.WriteString("api-perf serves the products-and-orders API. With no MYSQL_DSN it serves on an embedded\n" +
		"SQLite file, and with no REDIS_URL it caches and rate-limits in process.\n\n" +
		"Usage:\n  api-perf [command] [arguments]\n\nCommands:\n")
	// A synopsis too long for the column gets a line of its own, the
	// summary going under it, so the summaries keep their width.
	const maxColumn = 20
	cmds := commands()
	width := 0
	for _, c := range cmds {
		if n := len(c.usage()) - len("api-perf "); n <= maxColumn {
			width = max(width, n)
		}
	}
	indent := strings.Repeat(" ", 2+width+2)
	for _, c := range cmds {
		synopsis := strings.TrimPrefix(c.usage(), "api-perf ")
		if len(synopsis) > width {
			b.WriteString("  " + synopsis + "\n")
			writeWrapped(&b, c.Summary, indent, 80)
			continue
		}
		writeHanging(&b, fmt.Sprintf("  %-*s  ", width, synopsis), indent, c.Summary, 80)
	}
	b.WriteString("\nRun 'api-perf help <command>' for more about a command.\n\n" +
		"Environment (NAME=default; an empty or unset variable takes its default, and a bad value\n" +
		"stops start-up with a message naming the variable):\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "  %s=%s\n", s.Name, s.Default)
		writeWrapped(&b, strings.ReplaceAll(s.Meaning, "`", ""), "        ", 80)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printCommandHelp writes `api-perf help NAME`.
func printCommandHelp(w io.Writer, c command) error {
	text := "Usage: " + c.usage() + "\n\n" + strings.ToUpper(c.Summary[:1]) + c.Summary[1:] + ".\n"
	if c.Details != "" {
		text += "\n" + c.Details + "\n"
	}
	if c.NeedsConfig {
		text += "\nIt reads the environment variables listed by 'api-perf help'.\n"
	}
	_, err := io.WriteString(w, text)
	return err
}

// writeWrapped writes text as lines of at most width columns, each
// starting with indent.
func writeWrapped(b *strings.Builder, text, indent string, width int) {
	writeHanging(b, indent, indent, text, width)
}

// writeHanging writes text as lines of at most width columns: the first
// starts with first, the others with indent.
func writeHanging(b *strings.Builder, first, indent, text string, width int) {
	line, start := first, first
	for _, word := range strings.Fields(text) {
		if line != start && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, start = indent, indent
		}
		if line != start {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}
