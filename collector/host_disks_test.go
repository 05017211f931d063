package collector

import (
	"fmt"
	"testing"
)

func TestWholeDisks(t *testing.T) {
	names := []string{"loop0", "sda", "sda1", "sda2", "nvme0n1", "nvme0n1p1", "vda", "dm-0", "zram0", "md0", "sr0", "mmcblk0", "mmcblk0p1"}
	got := wholeDisks(names)
	if want := "[mmcblk0 nvme0n1 sda vda]"; fmt.Sprint(got) != want {
		t.Fatalf("wholeDisks = %v, want %s", got, want)
	}
}
