package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/blob/localfs"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/sqlite"
)

func newSessionsCmd() *cobra.Command {
	var dataDir string
	var remote apiFlags
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List, show or delete agent sessions of the embedded runtime",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the embedded runtime's data folder ($AGENTBUS_DATA_DIR)")
	remote.register(cmd.PersistentFlags())

	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List sessions, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if remote.addr != "" {
				return withRemote(cmd.Context(), remote, func(r remoteSessions) error {
					return listSessions(cmd.Context(), cmd.OutOrStdout(), r, limit)
				})
			}
			return withState(cmd.Context(), dataDir, func(st *sqlite.Store) error {
				return listSessions(cmd.Context(), cmd.OutOrStdout(), st, limit)
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 50, "how many sessions to list")

	var asJSON bool
	show := &cobra.Command{
		Use:   "show <session-id>",
		Short: "Print a session's timeline from its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if remote.addr != "" {
				return withRemote(cmd.Context(), remote, func(r remoteSessions) error {
					return showSession(cmd.Context(), cmd.OutOrStdout(), r, args[0], asJSON)
				})
			}
			return withState(cmd.Context(), dataDir, func(st *sqlite.Store) error {
				return showSession(cmd.Context(), cmd.OutOrStdout(), st, args[0], asJSON)
			})
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print the history's events as JSON lines")

	del := &cobra.Command{
		Use:   "delete <session-id>",
		Short: "Delete a session: its record, history, claims, fan-in and blobs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if remote.addr != "" {
				return usageErr(errors.New("sessions delete works on the local data folder only (the API has no delete); drop --addr"))
			}
			return withState(cmd.Context(), dataDir, func(st *sqlite.Store) error {
				return deleteSession(cmd.Context(), cmd.OutOrStdout(), st, dataDir, args[0])
			})
		},
	}
	cmd.AddCommand(list, show, del)
	return cmd
}

func withState(ctx context.Context, dataDir string, f func(*sqlite.Store) error) error {
	path := filepath.Join(dataDir, "state.db")
	if _, err := os.Stat(path); err != nil {
		return usageErr(fmt.Errorf("no embedded state at %s (run `agentbus run` first, or pass --data-dir)", path))
	}
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

// sessionLister and sessionReader are what listing and showing need: the
// state store in process, the API with --addr.
type sessionLister interface {
	ListSessions(ctx context.Context, cursor string, limit int) (state.SessionPage, error)
}

type sessionReader interface {
	GetSession(ctx context.Context, id string) (state.Session, error)
	historyReader
}

type historyReader interface {
	ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]state.Entry, error)
}

func listSessions(ctx context.Context, w io.Writer, st sessionLister, limit int) error {
	page, err := st.ListSessions(ctx, "", limit)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTATUS\tAGENT\tCREATED\tUPDATED")
	for _, s := range page.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status, s.AgentName,
			s.CreatedAt.Local().Format(time.DateTime), s.UpdatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func readAllHistory(ctx context.Context, h historyReader, sid string) ([]state.Entry, error) {
	var all []state.Entry
	after := int64(0)
	for {
		page, err := h.ReadHistory(ctx, sid, after, state.MaxPageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < state.MaxPageSize {
			return all, nil
		}
		after = page[len(page)-1].Seq
	}
}

func showSession(ctx context.Context, w io.Writer, st sessionReader, sid string, asJSON bool) error {
	sess, err := st.GetSession(ctx, sid)
	if errors.Is(err, state.ErrNotFound) {
		return usageErr(fmt.Errorf("no session %q", sid))
	} else if err != nil {
		return err
	}
	hist, err := readAllHistory(ctx, st, sid)
	if err != nil {
		return err
	}
	// The memory service appends events as they arrive from concurrent
	// deliveries; the timeline is ordered by event time.
	sort.SliceStable(hist, func(i, j int) bool { return hist[i].Time.Before(hist[j].Time) })
	if asJSON {
		for _, e := range hist {
			fmt.Fprintln(w, string(e.Data))
		}
		return nil
	}
	fmt.Fprintf(w, "session %s · %s · agent %s · created %s\n", sess.ID, sess.Status, sess.AgentName, sess.CreatedAt.Local().Format(time.DateTime))
	var t0 time.Time
	for i, e := range hist {
		if i == 0 {
			t0 = e.Time
		}
		fmt.Fprintf(w, "%+8.3fs  %-40s %s\n", e.Time.Sub(t0).Seconds(), e.Type, summarize(e.Data))
	}
	return nil
}

// summarize renders one history event's data in a line.
func summarize(raw []byte) string {
	var ev event.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return "(unreadable event)"
	}
	if ref := events.DataRef(ev); ref != "" && len(ev.Data()) == 0 {
		return "data at " + ref
	}
	return compact(ev.Data())
}

func deleteSession(ctx context.Context, w io.Writer, st state.Store, dataDir, sid string) error {
	if err := state.ValidateSessionID(sid); err != nil {
		return usageErr(err)
	}
	if err := st.DeleteSession(ctx, sid); err != nil {
		return err
	}
	blobDir := filepath.Join(dataDir, "blobs")
	if _, err := os.Stat(blobDir); err == nil {
		blobs, err := localfs.New(blobDir)
		if err != nil {
			return err
		}
		defer blobs.Close()
		for _, prefix := range []string{state.BlobPrefix(sid), claimcheck.SessionKeyPrefix(claimcheck.DefaultKeyPrefix, sid)} {
			if err := blobs.DeletePrefix(ctx, prefix); err != nil {
				return fmt.Errorf("delete blobs %s: %w", prefix, err)
			}
		}
	}
	fmt.Fprintf(w, "deleted session %s (record, history, claims, fan-in, blobs)\n", sid)
	return nil
}
