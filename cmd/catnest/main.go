// Command catnest runs a catnest node, a rendezvous server, or a demo mesh.
//
//	catnest serve  [flags]   run a personal node with a web UI
//	catnest signal [flags]   run a PeerServer-compatible rendezvous server
//	catnest demo   [flags]   run four nodes in one process, on loopback
//	catnest chat   [flags] CHANNEL   chat from a terminal through a running node
//	catnest share  [flags] PATH      share a file through a running node
//	catnest get    [flags] LINK      download a file through a running node
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `catnest: a peer-to-peer content mesh.

Usage:
  catnest serve  [flags]   run a personal node with a web UI
  catnest signal [flags]   run a PeerServer-compatible rendezvous server
  catnest demo   [flags]   run four nodes in one process on loopback, to try catnest
  catnest chat   [flags] CHANNEL   chat in a channel from a terminal, through a running node
  catnest share  [flags] PATH      share a file through a running node; prints its link
  catnest get    [flags] LINK      download a file through a running node, into a folder

Run "catnest COMMAND --help" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "catnest:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

// run parses the command line and runs the command until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		cfg, err := parseServe(args[1:], stderr)
		if err != nil {
			return err
		}
		return Serve(ctx, cfg, stdout)
	case "signal":
		cfg, err := parseSignal(args[1:], stderr)
		if err != nil {
			return err
		}
		return RunSignal(ctx, cfg, stdout)
	case "demo":
		cfg, err := parseDemo(args[1:], stderr)
		if err != nil {
			return err
		}
		return Demo(ctx, cfg, stdout)
	case "chat":
		cfg, err := parseChat(args[1:], stderr)
		if err != nil {
			return err
		}
		return RunChat(ctx, cfg, os.Stdin, stdout)
	case "share":
		cfg, err := parseShare(args[1:], stderr)
		if err != nil {
			return err
		}
		return RunShare(ctx, cfg, stdout)
	case "get":
		cfg, err := parseGet(args[1:], stderr)
		if err != nil {
			return err
		}
		return RunGet(ctx, cfg, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "catnest: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
