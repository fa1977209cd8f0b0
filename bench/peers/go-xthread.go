// go-xthread: Go channels between two OS threads (GOMAXPROCS=2), the
// hand-offs a channel that crosses schedulers is measured against:
//
//	go2 xthread_handoff_ns X   unbuffered ping-pong, round trip / 2
//	go2 xthread_stream_ns X    a 1024-slot buffered channel, one way, per message
package main

import (
	"fmt"
	"runtime"
	"time"
)

func main() {
	runtime.GOMAXPROCS(2)
	n := 1000000
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
	fmt.Printf("go2 xthread_handoff_ns %.1f\n", float64(time.Since(t0).Nanoseconds())/float64(2*n))
	close(a)

	m := 10000000
	c, done := make(chan int, 1024), make(chan int)
	go func() {
		sum := 0
		for v := range c {
			sum += v
		}
		done <- sum
	}()
	t0 = time.Now()
	for i := 0; i < m; i++ {
		c <- i
	}
	close(c)
	<-done
	fmt.Printf("go2 xthread_stream_ns %.1f\n", float64(time.Since(t0).Nanoseconds())/float64(m))
}
