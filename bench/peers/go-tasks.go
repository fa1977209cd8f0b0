// go-tasks: Go's goroutines and channels on one thread (GOMAXPROCS=1), the
// peers of coil-bench-runtime's figures, measured the same way:
//
//	go chan_handoff_ns X       unbuffered channel ping-pong, round trip / 2
//	go spawn_exit_ns X         go + exit of an empty goroutine, in waves of 100
//	go spawn_exit_burst_ns X   the same with 100,000 started before any runs
//	go parked_bytes X          resident memory (RSS, /proc/self/statm) per
//	                           goroutine with 100,000 parked on a channel
//
// Timings are the best of 5 runs, as coil-bench-runtime's.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func handoff(n int) float64 {
	a, b := make(chan int), make(chan int)
	go func() {
		for v := range a {
			b <- v
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		a <- i
		<-b
	}
	el := time.Since(t0)
	close(a)
	return float64(el.Nanoseconds()) / float64(2*n)
}

func spawn(n, wave int) float64 {
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i += wave {
		wg.Add(wave)
		for j := 0; j < wave; j++ {
			go wg.Done()
		}
		wg.Wait()
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func rss() int64 {
	var pages, resident int64
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return -1
	}
	defer f.Close()
	if _, err := fmt.Fscan(f, &pages, &resident); err != nil {
		return -1
	}
	return resident * int64(os.Getpagesize())
}

func parked(n int) float64 {
	runtime.GC()
	before := rss()
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-block
		}()
	}
	started.Wait()
	for i := 0; i < 10; i++ {
		runtime.Gosched() // the last ones reach their receive
	}
	after := rss()
	close(block)
	return float64(after-before) / float64(n)
}

func main() {
	runtime.GOMAXPROCS(1)
	best := func(f func() float64) float64 {
		b := f()
		for r := 1; r < 5; r++ {
			if v := f(); v < b {
				b = v
			}
		}
		return b
	}
	fmt.Printf("go chan_handoff_ns %.2f\n", best(func() float64 { return handoff(2000000) }))
	fmt.Printf("go spawn_exit_ns %.2f\n", best(func() float64 { return spawn(1000000, 100) }))
	fmt.Printf("go spawn_exit_burst_ns %.2f\n", best(func() float64 { return spawn(100000, 100000) }))
	fmt.Printf("go parked_bytes %.0f\n", parked(100000))
}
