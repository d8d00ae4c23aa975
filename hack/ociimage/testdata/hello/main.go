// Command hello is a tiny program for the image tests.
package main

import "fmt"

func main() { fmt.Println("hello from the image") }
