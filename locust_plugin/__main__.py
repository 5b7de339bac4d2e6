"""`python -m locust_plugin`: list the Hammerlab client options.

`locust --help` cannot show them: Locust prints its help before it imports any locustfile, and the
options are registered when `locustfiles/` imports this plugin.
"""

from locust_plugin.options import OPTIONS


def main() -> None:
    width = max(len(option.flag) for option in OPTIONS)
    print("Hammerlab client options (give them to locust, put them in locust.conf, or edit them in the UI):")
    for option in OPTIONS:
        print(f"  {option.flag:<{width}}  {option.full_help}")


if __name__ == "__main__":
    main()
