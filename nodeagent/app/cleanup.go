package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/nodeagent/internal/cache"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// CleanupConfig is what Cleanup needs: where the agent kept its state.
type CleanupConfig struct {
	CachePath string // the agent's --cache; "" = none
	// SysctlRecord is the record of the sysctls the agent changed and
	// their values before (conntrack.Apply's); "" = none.
	SysctlRecord string
	NetNSPath    string // "" = this process's network namespace
	Logger       hclog.Logger
}

// Cleanup removes everything the agent puts on a node, for an uninstall:
// the nftables table inet doorman (every chain, map, set and rule doorman
// owns lives in it; the agent creates no link, route or other table) and
// the cache file, and it puts back the sysctls the agent changed (the
// conntrack sysctls set at start): each recorded one whose value is still
// the one doorman set gets the value doorman found before its first
// change; one an administrator changed since is kept (and logged); then
// the record goes. kube-proxy's --cleanup leaves its sysctls as set.
// Connections tracked by conntrack keep their entries until they expire,
// as after any rule change; once the timeouts are back to the kernel's,
// an idle or half-closed connection may expire sooner than it would have.
//
// It first waits until no agent holds the cache file (an agent that is
// still stopping would put back a table deleted under it), then deletes
// the table, restores the sysctls, then deletes the cache. Running it
// again, or on a node doorman never ran on, finds nothing and succeeds.
func Cleanup(ctx context.Context, cfg CleanupConfig) error {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("cleanup")
	var claimed *cache.Claimed
	if cfg.CachePath != "" {
		var err error
		claimed, err = cache.Claim(ctx, cfg.CachePath, func() {
			log.Info("waiting for the node agent to exit: it holds the cache file", "path", cfg.CachePath)
		})
		if err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
	}

	dp, err := dataplane.Open(log, dataplane.Options{NetNSPath: cfg.NetNSPath})
	if err != nil {
		return errors.Join(fmt.Errorf("cleanup: %w", err), release(claimed))
	}
	removed, err := dp.Remove()
	err = errors.Join(err, dp.Close())
	if err != nil {
		return errors.Join(fmt.Errorf("cleanup: %w", err), release(claimed))
	}
	table := render.TableFamily + " " + render.TableName
	if removed {
		log.Info("deleted nftables table", "table", table)
	} else {
		log.Info("no nftables table to delete", "table", table)
	}

	if _, err := conntrack.Restore(log, cfg.NetNSPath, cfg.SysctlRecord); err != nil {
		return errors.Join(fmt.Errorf("cleanup: %w", err), release(claimed))
	}

	if claimed == nil {
		return nil
	}
	files, err := claimed.Remove()
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	if len(files) > 0 {
		log.Info("deleted cache", "paths", files)
	} else {
		log.Info("no cache file to delete", "path", cfg.CachePath)
	}
	return nil
}

// release lets go of a claimed cache file without deleting it.
func release(c *cache.Claimed) error {
	if c == nil {
		return nil
	}
	return c.Release()
}
