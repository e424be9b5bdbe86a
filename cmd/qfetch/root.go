package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/ops"
)

// dispatch runs the command line args and returns the exit code (README,
// "Exit codes"): 0 done, 1 failed, 2 usage or configuration error, 3 a
// fleet-wide fault (NATS, the bucket or Qualys unusable), 130 interrupted.
// Help and the version go to stdout, everything that went wrong to stderr.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	if len(args) == 0 {
		// A bare `qfetch` is a command line without a command: the list of
		// commands, where errors go.
		root.SetOut(stderr)
		_ = root.Help()
		return app.ExitConfig
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return app.ExitOK
	}
	name := "qfetch"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var r ranError
	switch {
	case !errors.As(err, &r):
		// Cobra refused the command line before the command ran.
		fmt.Fprintf(stderr, "%s: %s; see '%s --help'\n", name, oneLine(err), name)
		return app.ExitConfig
	case errors.Is(err, errUsage), errors.Is(err, ops.ErrNeedYes), errors.Is(err, ops.ErrSelection):
		fmt.Fprintf(stderr, "%s: %v\n", name, r.err)
		return app.ExitConfig
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, r.err)
		return app.ExitCode(r.err)
	}
}

// errUsage marks a command line a command refused (exit 2).
var errUsage = errors.New("bad command line")

type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

// usagef is a usage error saying what is wrong with the command line.
func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// ranError marks an error a command's own code returned, so that dispatch
// tells it from cobra's parsing errors, which are all usage errors.
type ranError struct{ err error }

func (e ranError) Error() string { return e.err.Error() }
func (e ranError) Unwrap() error { return e.err }

// runE adapts a command body: its errors are marked as its own.
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return ranError{err}
		}
		return nil
	}
}

// oneLine folds cobra's suggestion lines ("Did you mean this?") into its
// first line.
func oneLine(err error) string {
	var lines []string
	for l := range strings.Lines(err.Error()) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 2 && lines[1] == "Did you mean this?" {
		return lines[0] + " (did you mean " + strings.Join(lines[2:], " or ") + "?)"
	}
	return strings.Join(lines, " ")
}

// newRoot builds the command tree. Adding a command is adding it here.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var version strings.Builder
	app.PrintVersion(&version, "qfetch")
	root := &cobra.Command{
		Use:   "qfetch",
		Short: "qfetch's operator tool",
		Long: `qfetch's operator tool: runs, their status, dead letters and the watermark
(QFETCH_NATS_*, or --local for the runs of qfetch local), the preflight check,
the Qualys simulator, and a whole run in one process.`,
		Example: `  qfetch local                  a whole run on this machine, with the simulator
  qfetch runs                   the newest runs
  qfetch status RUN --watch     follow a run
  qfetch dlq list --json        dead letters, for a script
  qfetch completion bash        shell completion (bash, zsh, fish)`,
		Version:       app.Version,
		SilenceErrors: true,
		SilenceUsage:  true,
		Annotations:   map[string]string{exitCodesNote: "yes"},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate(version.String())
	root.SetUsageTemplate(helpTemplate)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.SetHelpCommand(helpCommand())
	// Declared here so that cobra uses it rather than its own, which would
	// also take -v.
	root.Flags().Bool("version", false, "print the version, the revision and the Go version")
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(
		checkCommand(),
		completionCommand(),
		dlqCommand(),
		exporterCommand(),
		localCommand(),
		runsCommand(),
		simCommand(),
		statusCommand(),
		tablesCommand(),
		versionCommand(),
		watermarkCommand(),
	)
	return root
}

// exitCodesNote is the annotation of a command whose help lists the exit
// codes: the commands that do something.
const exitCodesNote = "qfetch/exit-codes"

// withExitCodes marks cmd's help to list the exit codes.
func withExitCodes(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[exitCodesNote] = "yes"
	return cmd
}

// helpTemplate keeps the shape of qfetch's usage texts: the usage line
// first, then what the command does, examples, flags, exit codes.
var helpTemplate = `usage: {{if .HasAvailableSubCommands}}{{.CommandPath}} <command> [flags]{{else}}{{.UseLine}}{{end}}{{with (or .Long .Short)}}

{{. | trimTrailingWhitespaces}}{{end}}{{if .HasExample}}

examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

flags of {{.Parent.CommandPath}}:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if index .Annotations "` + exitCodesNote + `"}}

` + exitCodes + `{{end}}{{if .HasAvailableSubCommands}}

'qfetch help <command>' or '{{.CommandPath}} <command> --help' describes a command{{if not .HasParent}};
'qfetch --version' prints the version{{end}}.{{end}}
`

// exitCodes is app.ExitCodesHelp without its final newline, for the template.
var exitCodes = strings.TrimSuffix(app.ExitCodesHelp, "\n")

// helpCommand is `qfetch help [command]`: cobra's, except that an unknown
// topic is a usage error rather than the root's help with exit 0.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "describe a command (same as qfetch <command> --help)",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: runE(func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 || cmd == nil {
				return usagef("no help for %q: see 'qfetch help' for the commands", strings.Join(args, " "))
			}
			cmd.InitDefaultHelpFlag()
			return cmd.Help()
		}),
	}
}

func versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the version, the revision and the Go version (same as qfetch --version)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				b := app.BuildInfo()
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Version   string `json:"version"`
					Revision  string `json:"revision"`
					GoVersion string `json:"go_version"`
				}{b.Version, b.Revision, b.GoVersion})
			}
			app.PrintVersion(cmd.OutOrStdout(), "qfetch")
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// completionCommand is `qfetch completion bash|zsh|fish`: cobra's scripts,
// which complete commands, verbs and flags.
func completionCommand() *cobra.Command {
	shells := map[string]func(*cobra.Command, io.Writer) error{
		"bash": func(root *cobra.Command, w io.Writer) error { return root.GenBashCompletionV2(w, true) },
		"zsh":  func(root *cobra.Command, w io.Writer) error { return root.GenZshCompletion(w) },
		"fish": func(root *cobra.Command, w io.Writer) error { return root.GenFishCompletion(w, true) },
	}
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print the shell completion script for bash, zsh or fish",
		Long: `Prints the script that makes the shell complete qfetch's commands, verbs
and flags. Load it in the current shell, or install it for every new one.`,
		Example: `  source <(qfetch completion bash)
  qfetch completion bash > /etc/bash_completion.d/qfetch
  qfetch completion zsh > "${fpath[1]}/_qfetch"     (with compinit in ~/.zshrc)
  qfetch completion fish > ~/.config/fish/completions/qfetch.fish`,
		ValidArgs: []cobra.Completion{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || shells[args[0]] == nil {
				return fmt.Errorf("say which shell: bash, zsh or fish")
			}
			return nil
		},
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return shells[args[0]](cmd.Root(), cmd.OutOrStdout())
		}),
	}
}
