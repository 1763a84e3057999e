module flick.dev/flick

go 1.19
