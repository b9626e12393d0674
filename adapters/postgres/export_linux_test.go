package postgres

import (
	"context"
	"errors"
	"syscall"

	"github.com/marketplace/catalog/application/rebuild"
)

// LockSessionSetting reads a setting of the rebuild lock's own session: other sessions cannot
// see it in SQL.
func LockSessionSetting(ctx context.Context, l rebuild.Lock, name string) (string, error) {
	al, ok := l.(*advisoryLock)
	if !ok {
		return "", errors.New("not an advisory lock")
	}
	al.mu.Lock()
	defer al.mu.Unlock()
	var v string
	err := al.conn.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// LockSocketKeepAlive reads the keepalive options of the lock connection's socket: whether
// keepalive is on, and the idle time, probe interval (seconds) and probe count.
func LockSocketKeepAlive(l rebuild.Lock) (on bool, idle, interval, count int, err error) {
	al, ok := l.(*advisoryLock)
	if !ok {
		return false, 0, 0, 0, errors.New("not an advisory lock")
	}
	sc, ok := al.conn.PgConn().Conn().(syscall.Conn)
	if !ok {
		return false, 0, 0, 0, errors.New("the connection has no socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, 0, 0, 0, err
	}
	var onInt int
	cerr := raw.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, e := syscall.GetsockoptInt(int(fd), level, opt)
			if e != nil && err == nil {
				err = e
			}
			return v
		}
		onInt = get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		interval = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
		count = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
	})
	if cerr != nil {
		return false, 0, 0, 0, cerr
	}
	return onInt != 0, idle, interval, count, err
}
