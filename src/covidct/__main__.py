from covidct.cli import entry

entry()
