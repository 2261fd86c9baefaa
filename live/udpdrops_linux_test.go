package live

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// udpDrops returns how many datagrams the kernel dropped on this
// process's open UDP sockets (their receive buffers were full), from
// /proc/net/udp; -1 if it cannot tell.
func udpDrops() int64 {
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	f, err := os.Open("/proc/self/net/udp")
	if err != nil {
		return -1
	}
	defer f.Close()
	var drops int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || !mine[fs[9]] {
			continue
		}
		n, err := strconv.ParseInt(fs[len(fs)-1], 10, 64)
		if err == nil {
			drops += n
		}
	}
	return drops
}
