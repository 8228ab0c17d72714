module github.com/shmreg/shmreg

go 1.26.8
