package lock

import (
	"testing"
	"unsafe"
)

// TestLayout pins the Go declaration to the table in docs/LAYOUT.md ("The
// reader/writer lock"). Change both together, with the layout version.
func TestLayout(t *testing.T) {
	var s shared
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(shared)", unsafe.Sizeof(s), Size},
		{"sizeof(header)", unsafe.Sizeof(s.hdr), 64},
		{"seq", unsafe.Offsetof(s.hdr.seq), 0},
		{"waiters", unsafe.Offsetof(s.hdr.waiters), 4},
		{"writer", unsafe.Offsetof(s.hdr.writer), 8},
		{"forced", unsafe.Offsetof(s.hdr.forced), 16},
		{"recovered", unsafe.Offsetof(s.hdr.recovered), 24},
		{"magic", unsafe.Offsetof(s.hdr.magic), 32},
		{"version", unsafe.Offsetof(s.hdr.version), 36},
		{"nreaders", unsafe.Offsetof(s.hdr.nreaders), 40},
		{"readers", unsafe.Offsetof(s.readers), 64},
		{"sizeof(readers)", unsafe.Sizeof(s.readers), 1024},
		{"Readers", Readers, 128},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if layoutMagic != 0x4b4c5752 || string([]byte{0x52, 0x57, 0x4c, 0x4b}) != "RWLK" {
		t.Errorf("magic %#x is not \"RWLK\" little-endian", layoutMagic)
	}
}

func TestHolderWordPacking(t *testing.T) {
	h := Holder{Pid: 1<<22 - 1, Start: 1<<40 + 12345}
	w := pack(h, 0xBEEF|0x8000)
	if wordPid(w) != h.Pid {
		t.Errorf("pid %d, want %d", wordPid(w), h.Pid)
	}
	if wordStart(w) != h.Start&startMask {
		t.Errorf("start %d, want %d", wordStart(w), h.Start&startMask)
	}
	if w>>48 != 0x3EEF || w&draining != 0 {
		t.Errorf("nonce %#x, want 0x3eef and the draining bit clear", w>>48)
	}
	if !sameProcess(w, h) || sameProcess(w, Holder{Pid: h.Pid, Start: h.Start + 1}) {
		t.Error("sameProcess does not tell the start times apart")
	}
	if pack(Holder{Pid: 1}, 0) == 0 {
		t.Error("a holder word must never be 0 (free)")
	}
}
