// Command empty does nothing: the yardstick for a Go program's start.
package main

func main() {}
