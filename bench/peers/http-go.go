// http-go: the Go peer of `bench/compare http`. Go's net package, one
// goroutine per connection with plain blocking reads, the way Go servers are
// written: every request (a keep-alive GET /, its headers ending in an empty
// line) is answered with a 13-byte "Hello, World!" body. GOMAXPROCS comes from
// the environment (bench/compare sets it to the peers' worker count, 1 by
// default).
//
//	http-go PORT
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
)

var reply = []byte("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")

func serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(line) <= 2 { // "\r\n": the end of a request's headers
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: http-go PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "http-go:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}
