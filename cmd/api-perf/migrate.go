package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/api-perf/api-perf/storage"
)

// migrateUsage is the migrate command's argument synopsis.
const migrateUsage = "[status|up|down N|force V]"

// migrate runs `api-perf migrate [status|up|down N|force V]`; no argument
// is up, as it was before the subcommands existed.
func (p *program) migrate(args []string) error {
	sub := "up"
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	cfg := storageConfig(p.cfg)
	switch sub {
	case "up", "status":
		if len(args) > 0 {
			return fmt.Errorf("migrate %s takes no arguments (usage: api-perf migrate %s)", sub, migrateUsage)
		}
	case "down", "force":
		if len(args) != 1 {
			return fmt.Errorf("migrate %s needs one number (usage: api-perf migrate %s)", sub, migrateUsage)
		}
	default:
		return fmt.Errorf("unknown migrate command %q (usage: api-perf migrate %s)", sub, migrateUsage)
	}

	switch sub {
	case "status":
		st, err := storage.ReadMigrationStatus(p.ctx, cfg)
		if err != nil {
			return storageError(err)
		}
		if err := printMigrationStatus(p.stdout, st); err != nil {
			return err
		}
		if st.Dirty {
			return explainMigration(&storage.DirtyError{Version: st.Version})
		}
		return nil
	case "up":
		res, err := storage.Migrate(p.ctx, cfg)
		printMigrated(p.stdout, res, "applied")
		if err != nil {
			return storageError(err)
		}
	case "down":
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 {
			return fmt.Errorf("migrate down: %q is not a positive number of migrations to undo", args[0])
		}
		res, err := storage.MigrateDown(p.ctx, cfg, n)
		printMigrated(p.stdout, res, "undid")
		if err != nil {
			return storageError(err)
		}
	case "force":
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 0 {
			return fmt.Errorf("migrate force: %q is not a version (0 for none)", args[0])
		}
		if err := storage.ForceMigrationVersion(p.ctx, cfg, v); err != nil {
			return storageError(err)
		}
		fmt.Fprintf(p.stdout, "forced version %d, clean\n", v)
	}
	st, err := storage.ReadMigrationStatus(p.ctx, cfg)
	if err != nil {
		return storageError(err)
	}
	fmt.Fprintf(p.stdout, "%s schema at version %d, %s\n", st.Dialect, st.Version, pendingSummary(st.Pending))
	return nil
}

// printMigrated writes what a migration command did, one line a step.
func printMigrated(w io.Writer, res storage.Migrated, verb string) {
	if res.Adopted > 0 {
		fmt.Fprintf(w, "took over version %d from the bookkeeping of a release before golang-migrate\n", res.Adopted)
	}
	for _, m := range res.Steps {
		fmt.Fprintf(w, "%s %s\n", verb, m)
	}
}

// printMigrationStatus writes `api-perf migrate status`.
func printMigrationStatus(w io.Writer, st storage.MigrationStatus) error {
	var b strings.Builder
	fmt.Fprintf(&b, "database: %s\nversion:  %d", st.Dialect, st.Version)
	if st.Legacy {
		b.WriteString(" (recorded by a release before golang-migrate; the next migrate or start-up takes it over)")
	}
	if st.Version > st.Latest {
		fmt.Fprintf(&b, " (ahead of this build, whose last migration is %d)", st.Latest)
	}
	b.WriteString("\nstate:    ")
	if st.Dirty {
		fmt.Fprintf(&b, "dirty: the step to version %d stopped part-way, or is running in another process\n", st.Version)
	} else {
		b.WriteString("clean\n")
	}
	b.WriteString("pending:  ")
	if len(st.Pending) == 0 {
		b.WriteString("none\n")
	}
	for i, m := range st.Pending {
		if i > 0 {
			b.WriteString("          ")
		}
		fmt.Fprintf(&b, "%s\n", m)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pendingSummary(pending []storage.Migration) string {
	if len(pending) == 0 {
		return "nothing pending"
	}
	return fmt.Sprintf("%d pending", len(pending))
}

// explainMigration adds to a dirty-schema error what an operator does
// about it; other errors pass as they are.
func explainMigration(err error) error {
	var dirty *storage.DirtyError
	if !errors.As(err, &dirty) {
		return err
	}
	return &dirtyAdvice{err: err, version: dirty.Version}
}

// dirtyAdvice is a dirty-schema error followed by the way out of it.
type dirtyAdvice struct {
	err     error
	version int
}

func (e *dirtyAdvice) Error() string {
	return fmt.Sprintf("%v\n\nNothing migrates until this is resolved. The step was applying migration %d or "+
		"undoing migration %d: compare the schema with that file (storage/migrations/<dialect>/ in this "+
		"release's source), finish or undo the step by hand, then record the version the schema now matches "+
		"with 'api-perf migrate force <version>' and run 'api-perf migrate up'. See docs/migrations.md.",
		e.err, e.version, e.version+1)
}

func (e *dirtyAdvice) Unwrap() error { return e.err }
