package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// Options configure a Dataplane.
type Options struct {
	// NetNSPath is the network namespace to program: "" for the current
	// one, else a path such as /run/netns/node1.
	NetNSPath string
	// Render shapes the table's static chains (local traffic detection,
	// ClusterIP masquerade); the zero value is the default.
	Render render.Options
}

// Change moves one view entry from Old to New (Key, Old: nil when the key
// is new, New: nil when it is removed).
type Change = render.Change

// Stats describe one call's kernel work.
type Stats struct {
	// Ops counts kernel objects added, deleted or replaced (tables, sets,
	// chains, chain flushes, rules, elements).
	Ops int
	// NotProgrammed lists, after a Sync or an Apply that committed, every
	// entry the table leaves out in whole (it cannot be rendered) or in
	// part (another entry owns one of its frontends), with the reason; nil
	// when there is none. It is the whole list, not this call's part: an
	// Apply may program an entry it was not given, whose frontend the
	// changes freed.
	NotProgrammed map[string]error
	// Read says, for a Sync, whether it read the table's elements back
	// and why (ReadSkipped: it did not); "" for an Apply.
	Read ReadCheck
	// Steps is where a Sync's time went; zero for an Apply.
	Steps SyncSteps
}

// SyncSteps is where a Sync's time went, step by step, in the order they
// run. Commit is the kernel's own share: the netlink batch from its
// first message sent to the kernel's last answer.
type SyncSteps struct {
	Render time.Duration // the view to the table's sets, chains and elements
	Read   time.Duration // the table read back (its skeleton only, or all)
	Plan   time.Duration // what to change
	Encode time.Duration // the transaction to netlink messages
	Commit time.Duration // the batch through the kernel
}

// ErrNotSynced is returned by Apply before a successful Sync: Apply needs to
// know what the kernel holds.
var ErrNotSynced = errors.New("dataplane not synced")

// InvalidEntriesError is returned by Sync when it left entries out, in
// whole or in part (every other entry is programmed). Entries maps each
// key to its reason.
type InvalidEntriesError struct {
	Entries map[string]error
}

func (e *InvalidEntriesError) Error() string {
	keys := make([]string, 0, len(e.Entries))
	for k := range e.Entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	msgs := make([]string, len(keys))
	for i, k := range keys {
		msgs[i] = e.Entries[k].Error()
	}
	return fmt.Sprintf("%d entries not programmed: %s", len(keys), strings.Join(msgs, "; "))
}

// programmed is what a Sync learns of the table and each Apply keeps up
// to date: the Dataplane and the Fake share it, and with it the planning
// of an Apply.
type programmed struct {
	synced bool
	chains map[string]bool // per-K chains present in the kernel
	// chainUsers counts the programmed entries that jump to each per-K
	// chain; a chain in chains with none is unused (RetireUnused).
	chainUsers map[string]int
	owners     map[render.SharedID]int // owner counts of shared elements
	invalid    map[string]error        // entries Sync left out, why (they own nothing)
	claims     *render.Claims          // who owns each frontend
}

// Dataplane programs doorman's nftables table in one network namespace.
type Dataplane struct {
	log   hclog.Logger
	conn  *nftables.Conn
	query *netlink.Conn // generation and table handle requests
	netns *os.File
	table *nftables.Table
	sets  map[string]*nftables.Set // the layout's sets, for element messages
	opts  render.Options

	mu sync.Mutex
	programmed
	// known: what the kernel holds since the last own commit (zero: not
	// known); trusted: the Mark an earlier process recorded, for the next
	// Sync only (see Trust).
	known, trusted Mark
	// witness vouches for commits the dataplane did not make (nil: none;
	// see SetWitness).
	witness Witness
	// free returns the heap to the OS a while after a large Sync (see
	// freeLater); nil before the first.
	free *time.Timer
	// lastRun is where the last run's time went (Encode and Commit).
	lastRun SyncSteps
}

// Open connects to nftables in the network namespace of opts.
func Open(log hclog.Logger, opts Options) (*Dataplane, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := opts.Render.Validate(); err != nil {
		return nil, fmt.Errorf("table options: %w", err)
	}
	d := &Dataplane{log: log.Named("dataplane"), opts: opts.Render}
	connOpts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(enlargeBuffers)}
	if opts.NetNSPath != "" {
		f, err := os.Open(opts.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		d.netns = f
		connOpts = append(connOpts, nftables.WithNetNSFd(int(f.Fd())))
	}
	conn, err := nftables.New(connOpts...)
	if err != nil {
		if d.netns != nil {
			_ = d.netns.Close()
		}
		return nil, fmt.Errorf("open nftables connection: %w", err)
	}
	d.conn = conn
	d.query, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(netnsFd(d.netns))})
	if err != nil {
		_ = conn.CloseLasting()
		if d.netns != nil {
			_ = d.netns.Close()
		}
		return nil, fmt.Errorf("open nftables query connection: %w", err)
	}
	d.table = &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	d.sets = make(map[string]*nftables.Set)
	for _, s := range render.Sets() {
		d.sets[s.Name] = nftSet(d.table, s)
	}
	return d, nil
}

// Close releases the netlink socket. The kernel keeps the table.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	if d.free != nil {
		d.free.Stop()
	}
	d.mu.Unlock()
	err := errors.Join(d.conn.CloseLasting(), d.query.Close())
	if d.netns != nil {
		err = errors.Join(err, d.netns.Close())
	}
	return err
}

// netnsFd is the descriptor netlink.Config takes: 0 for the current
// network namespace.
func netnsFd(f *os.File) uintptr {
	if f == nil {
		return 0
	}
	return f.Fd()
}

// Apply moves the kernel from each change's Old to its New in one
// transaction, touching only the elements those entries own (and adding a
// per-K chain the first time a Service has K endpoints). An entry whose
// frontend (address . protocol . port, or nodePort) another entry owns is
// programmed without it; an entry the changes free a frontend for, or take
// one from, moves in the same transaction although it did not change (see
// render.Claims). On error nothing changed in the kernel; the caller falls
// back to Sync.
func (d *Dataplane) Apply(changes []Change) (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.synced {
		return Stats{}, ErrNotSynced
	}
	ap, err := d.planApply(changes)
	if err != nil {
		return Stats{}, fmt.Errorf("apply: %w", err)
	}
	if err := d.run(ap.tx); err != nil {
		return Stats{}, fmt.Errorf("apply %d changes: %w", len(changes), err)
	}
	d.commitApply(ap)
	if !d.known.IsZero() {
		d.known.Elements += elementsDigest(ap.adds) - elementsDigest(ap.dels)
	}
	ops := ap.tx.objects()
	d.log.Debug("applied", "changes", len(changes), "moves", len(ap.plan.Moves), "ops", ops)
	return Stats{Ops: ops, NotProgrammed: d.notProgrammed()}, nil
}

// commitApply records a committed Apply.
func (p *programmed) commitApply(ap *applyPlan) {
	p.claims.Commit(ap.plan)
	addCounts(p.owners, ap.delta)
	for _, name := range ap.newChains {
		p.chains[name] = true
	}
	addCounts(p.chainUsers, ap.users)
	for _, c := range ap.changes {
		// Its new value rendered (or it is gone): it is no longer left out.
		delete(p.invalid, c.Key)
	}
}

// commitSync records a committed Sync to want, as plan planned it.
func (p *programmed) commitSync(want *render.Table, plan *syncPlan) {
	p.chains = plan.chains
	p.chainUsers = want.ChainUsers
	p.owners = want.Owners
	p.invalid = want.Invalid
	p.claims = want.Claims
	p.synced = true
}

// notProgrammed lists the entries left out in whole or in part; its cost
// is that of those entries, not of the table.
func (p *programmed) notProgrammed() map[string]error {
	refused := p.claims.Refused()
	if len(p.invalid) == 0 {
		return refused
	}
	out := maps.Clone(p.invalid)
	maps.Copy(out, refused)
	return out
}

// addCounts adds delta to counts, dropping every key whose count falls to
// zero or below.
func addCounts[K comparable](counts, delta map[K]int) {
	for k, n := range delta {
		if v := counts[k] + n; v > 0 {
			counts[k] = v
		} else {
			delete(counts, k)
		}
	}
}
