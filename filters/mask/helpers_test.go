package mask

import "github.com/custos-dev/custos/filters/mask/engine"

func engineConfig(js string) engine.Config {
	c, err := engine.ParseConfig([]byte(js))
	if err != nil {
		panic(err)
	}
	return c
}
